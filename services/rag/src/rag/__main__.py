"""``python -m rag`` (serve) and ``python -m rag migrate``."""

import sys

from rag.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
