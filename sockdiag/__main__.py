"""`python -m sockdiag`: run the CLI and exit with its status."""

from sockdiag.cli import entry

if __name__ == "__main__":
    entry()
