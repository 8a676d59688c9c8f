"""The fake upstream: nginx (Debian's ``nginx-light``) answering with fixed bodies.

Both gateways are pointed at it, and it is also measured on its own as the
``direct`` target: the floor no gateway can beat. The bodies are
``bench/upstream/chat.json`` (a chat.completion) and ``bench/upstream/stream.sse``
(10 chat.completion.chunk events with a final usage chunk, then ``[DONE]``),
embedded into the rendered ``bench/upstream/nginx.conf`` so nginx serves them
from memory.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType

from devtools.ports import free_port
from devtools.procs import Child

from .layout import BenchLayout, render
from .target import TargetError, wait_until_ok

__all__ = ["Nginx", "nginx_literal"]

_STOP_GRACE_S = 5.0


def nginx_literal(text: str) -> str:
    """``text`` escaped for a single-quoted nginx string (nginx turns ``\\n`` back into a newline)."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


class Nginx:
    """nginx on a free loopback port serving the fixed bodies; the ``direct`` target."""

    name = "direct"

    def __init__(self, layout: BenchLayout) -> None:
        self._layout = layout
        self.port = free_port()
        self._child: Child | None = None

    @property
    def base_url(self) -> str:
        """The upstream's origin; the OpenAI base URLs are ``/v1`` and ``/stream/v1`` under it."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, *, stream: bool) -> str:
        return f"{self.base_url}{'/stream' if stream else ''}/v1/chat/completions"

    def model(self, *, stream: bool) -> str:
        return "bench-stream" if stream else "bench-chat"

    def process_roots(self) -> dict[str, int]:
        if self._child is None:
            raise TargetError("nginx is not running")
        return {"nginx": self._child.pid}

    def __enter__(self) -> Nginx:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise TargetError(
                "nginx not found: run `make bench-deps` (apt-get install nginx-light)"
            )
        work = self._layout.scratch("nginx")
        (work / "tmp").mkdir(exist_ok=True)
        conf = work / "nginx.conf"
        conf.write_text(
            render(
                self._layout.input("upstream/nginx.conf").read_text(),
                {
                    "WORK": str(work),
                    "PORT": str(self.port),
                    "CHAT_BODY": nginx_literal(self._body("chat.json")),
                    "STREAM_BODY": nginx_literal(self._body("stream.sse")),
                },
            )
        )
        argv = [binary, "-p", str(work), "-c", str(conf), "-e", str(work / "nginx-error.log")]
        self._child = Child("nginx", argv, env={}, cwd=work, log_path=work / "nginx.log")
        try:
            wait_until_ok(f"{self.base_url}/healthz", self._child, timeout_s=10, what="nginx")
        except BaseException:
            self._child.stop(_STOP_GRACE_S)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._child is not None:
            self._child.stop(_STOP_GRACE_S)

    def _body(self, name: str) -> str:
        return self._layout.input(f"upstream/{name}").read_text()
