"""Alembic in a short-lived child process, so a service never keeps it resident.

``db.migrate`` and ``db.wait_for_head`` import Alembic and Mako (about 14 MiB of
modules that stay resident for the life of the process). A service needs them
once, at start-up, so it runs them here instead::

    service process                        child: python -m gateway_common.migrate_proc
    await migrate(url=..., ...)      --->  db.migrate(...)          exit 0
    await wait_for_head(..., t)      --->  db.wait_for_head(..., t)  exit 0, or 3 on timeout

The database URL (it may carry a password) goes over the child's stdin, never
its command line. A child that fails raises ``MigrationFailed`` carrying the
tail of its stderr (the Alembic or driver traceback); a wait that runs out
raises ``TimeoutError`` with the child's message, as ``db.wait_for_head`` does.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

__all__ = ["MigrationFailed", "main", "migrate", "wait_for_head"]

#: Exit status of a child whose ``wait`` ran out of time.
_TIMED_OUT = 3
#: How much of a failed child's stderr the exception carries.
_TAIL_CHARS = 4000


class MigrationFailed(RuntimeError):
    """The migration child exited non-zero; ``str()`` ends with its stderr tail."""


async def migrate(*, url: str, migrations_dir: Path, service: str) -> None:
    """``db.migrate`` in a child process; raise ``MigrationFailed`` if it fails."""
    await _run("migrate", {"url": url, "migrations_dir": str(migrations_dir), "service": service})


async def wait_for_head(*, url: str, migrations_dir: Path, service: str, timeout_s: float) -> None:
    """``db.wait_for_head`` in a child process; ``TimeoutError`` when it runs out."""
    await _run(
        "wait",
        {
            "url": url,
            "migrations_dir": str(migrations_dir),
            "service": service,
            "timeout_s": timeout_s,
        },
    )


async def _run(command: str, job: dict[str, object]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_common.migrate_proc",
        command,
        stdin=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await proc.communicate(json.dumps(job).encode())
    except BaseException:
        # Cancelled (shutdown during start-up): do not leave the child behind.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    text = stderr.decode(errors="replace").strip()
    if proc.returncode == _TIMED_OUT:
        raise TimeoutError(text.splitlines()[-1] if text else f"{job['service']}: timed out")
    if proc.returncode != 0:
        raise MigrationFailed(
            f"{job['service']}: {command} exited with {proc.returncode}:\n{text[-_TAIL_CHARS:]}"
        )


def main(argv: list[str]) -> int:
    """The child: read the job from stdin, run it, return the exit status."""
    from . import db

    job = json.loads(sys.stdin.read())
    url, service = str(job["url"]), str(job["service"])
    migrations_dir = Path(job["migrations_dir"])
    if argv == ["migrate"]:
        db.migrate(url=url, migrations_dir=migrations_dir, service=service)
        return 0
    if argv == ["wait"]:
        try:
            db.wait_for_head(
                url=url,
                migrations_dir=migrations_dir,
                service=service,
                timeout_s=float(job["timeout_s"]),
            )
        except TimeoutError as exc:
            print(exc, file=sys.stderr)
            return _TIMED_OUT
        return 0
    print(f"unknown command {argv!r}; use migrate or wait", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
