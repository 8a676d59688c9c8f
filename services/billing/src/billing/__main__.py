"""``python -m billing`` (serve) and ``python -m billing migrate``."""

import sys

from billing.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
