"""Measuring readers: metrics, evaluation runs and reports, the --view page, learning curves."""
