"""``python -m sessions`` (serve) and ``python -m sessions migrate``."""

import sys

from sessions.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
