"""Training: the loop (loop.py), a run on disk (run.py), and the stages trained on their own (addons.py)."""

from .addons import train_addon
from .loop import train

__all__ = ["train", "train_addon"]
