#!/usr/bin/env python
"""Freeze a reproducible set of captchas: python export_fixed_set.py --n 2000 [-T] [--seed S]."""

from captcha_stream.cli import export_main, run

if __name__ == "__main__":
    run(export_main)
