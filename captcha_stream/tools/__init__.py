"""Tools that write a changed copy of a checkpoint: slim, average, widen, attach."""
