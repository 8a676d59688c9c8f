"""``python -m rag`` (serve) and ``python -m rag migrate``."""

import sys

from gateway_common.lean import defer_nats_websocket

defer_nats_websocket()  # before anything imports nats (gateway_common.lean)

from rag.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
