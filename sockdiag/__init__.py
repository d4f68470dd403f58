"""sockdiag: socket diagnostics from the command line (relay, scan, socket table, bind diagnosis)."""

__version__ = "0.1.0"
# The date stamped into the generated man page; fixed so the page is reproducible.
RELEASE_DATE = "2026-11-22"
