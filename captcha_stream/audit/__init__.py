"""Scheme audits: train a reader on a captcha scheme from scratch for a budget, and report how fast it falls."""
