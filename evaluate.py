#!/usr/bin/env python
"""Measure a trained reader: python evaluate.py [--checkpoint PATH] [--data DIR] [--view]."""

from captcha_stream.cli import evaluate_main, run

if __name__ == "__main__":
    run(evaluate_main)
