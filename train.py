#!/usr/bin/env python
"""Train a captcha reader: python train.py --config configs/stream.yaml --steps 200000 [--resume]."""

from captcha_stream.cli import run, train_main

if __name__ == "__main__":
    run(train_main)
