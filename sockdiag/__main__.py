"""`python -m sockdiag`: run the CLI and exit with its status."""

import sys

from sockdiag.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
