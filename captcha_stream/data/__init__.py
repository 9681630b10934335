"""Where captchas come from: seeded rendering, streams for training, folders and frozen sets on disk."""
