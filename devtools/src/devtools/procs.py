"""Child processes of a local stack: spawned in their own process group, logged to a file.

Each child runs in a new session (hence its own process group, and out of reach of
the terminal's Ctrl-C: the supervisor decides the shutdown order). Stopping sends
SIGTERM to the group, waits, then SIGKILLs the group, so grandchildren cannot
outlive their parent either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["Child", "log_tail"]

_TAIL_BYTES = 16 * 1024


class Child:
    """One supervised process and its log file (stdout and stderr, truncated at spawn)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The child's pid, which is also its process group id."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status if it has exited (negative: killed by that signal), else ``None``."""
        return self._popen.poll()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; ``True`` if the process has exited."""
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, grace_s: float) -> int:
        """SIGTERM the group, wait ``grace_s``, SIGKILL the group; return the exit status.

        Idempotent. The group is SIGKILLed even after a clean exit, to take down any
        grandchild the child left behind.
        """
        if self.returncode is None:
            self._signal_group(signal.SIGTERM)
            if not self.wait(grace_s):
                self._signal_group(signal.SIGKILL)
                self._popen.wait()
        self._signal_group(signal.SIGKILL)
        return self._popen.wait()

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log, for error messages."""
        return log_tail(self.log_path, lines)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is already empty
            os.killpg(self.pid, sig)

    def __repr__(self) -> str:
        return f"Child({self.name!r}, pid={self.pid}, returncode={self.returncode})"


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of the file at ``path`` ("" if it does not exist)."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - _TAIL_BYTES))
            data = file.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
