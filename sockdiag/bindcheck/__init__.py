"""bindcheck: the bind / TIME_WAIT / SO_REUSEADDR diagnosis (options and the I/O; verdicts in core)."""
