"""Data files shipped with sockdiag (read with importlib.resources): top-ports.txt."""
