"""Where a service spends its CPU under load: py-spy, attached while wrk runs.

``ensure_py_spy`` installs py-spy into ``bench/.work/tools-venv`` (it is not a
project dependency). ``Recording`` attaches one ``py-spy record --format raw
--nonblocking --gil`` per process for a fixed duration around a block of load.
The process is never paused, and only samples of the thread holding the GIL are
kept: that is the Python work (plus C called with the GIL held: orjson,
pydantic-core, uvloop callbacks). C that releases the GIL (the event loop's
epoll, gRPC's core, sqlite3) is not in the profile; the per-process CPU of the
report covers it. Without ``--gil``, py-spy would also count threads sleeping in
C (gRPC's poller thread, uvloop's epoll) as busy. ``read_profile`` ranks the
collapsed stacks:

* by function: the innermost frame of each sample, the code burning the CPU;
* by package: the library that frame lives in (``asyncio``, ``grpc``,
  ``starlette``, ``router``, ...), the coarse answer to "whose code is this";
* our code: each first-party function the event loop runs, inclusive (a sample
  counts for every such function on its stack), so the steps of our request
  path can be compared with each other.

Profiled rounds are extra rounds: sampling slows the target, so their figures
are never reported as measurements.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .layout import BenchLayout
from .target import TargetError

__all__ = [
    "FIRST_PARTY",
    "PY_SPY_REQUIREMENT",
    "Profile",
    "Recording",
    "ensure_py_spy",
    "read_profile",
]

PY_SPY_REQUIREMENT = "py-spy==0.4.3"
_RATE_HZ = 200
#: Seconds py-spy may take past its duration to write its output.
_OVERRUN_S = 30.0
#: Packages whose frames count as "our code".
FIRST_PARTY = frozenset({"edge", "router", "billing", "sessions", "rag", "gateway_common"})
#: Packages whose frames mark "now inside the event loop".
_LOOPS = frozenset({"asyncio", "uvloop"})
#: A raw frame: ``function (path/to/file.py:123)``.
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")


def ensure_py_spy(layout: BenchLayout) -> Path:
    """The py-spy binary of ``bench/.work/tools-venv``, installed on first use."""
    venv = layout.work / "tools-venv"
    binary = venv / "bin" / "py-spy"
    if binary.exists():
        return binary
    uv = Path(sys.executable).parent / "uv"
    python = venv / "bin" / "python"
    for argv in (
        [str(uv), "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)],
        [str(uv), "pip", "install", "--quiet", "--python", str(python), PY_SPY_REQUIREMENT],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise TargetError(f"installing py-spy failed: {' '.join(argv)}\n{done.stderr}")
    return binary


class Recording:
    """py-spy on several processes at once, for ``duration_s`` from entering the block.

    Leaving the block waits for every py-spy to write its output (or kills them all
    when the block raised); ``outputs`` maps each name to its collapsed-stack file.
    """

    def __init__(
        self,
        py_spy: Path,
        pids: Mapping[str, int],
        *,
        duration_s: int,
        out_dir: Path,
    ) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.outputs = {name: out_dir / f"{name}.txt" for name in pids}
        self._argv = {
            name: [
                *(str(py_spy), "record", "--pid", str(pid), "--duration", str(duration_s)),
                *("--rate", str(_RATE_HZ), "--format", "raw", "--nonblocking", "--gil"),
                *("--output", str(self.outputs[name])),
            ]
            for name, pid in pids.items()
        }
        self._duration_s = duration_s
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Recording:
        for name, argv in self._argv.items():
            self._procs[name] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            for proc in self._procs.values():
                proc.kill()
                proc.wait()
            return
        failures = []
        for name, proc in self._procs.items():
            try:
                _, stderr = proc.communicate(timeout=self._duration_s + _OVERRUN_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, stderr = proc.communicate()
            if proc.returncode != 0 or not self.outputs[name].exists():
                failures.append(
                    f"{name}: py-spy exited {proc.returncode}: {stderr.decode()[-500:]}"
                )
        if failures:
            raise TargetError("profiling failed:\n" + "\n".join(failures))


@dataclass(frozen=True)
class Profile:
    """The ranked samples of one process."""

    name: str
    samples: int
    by_function: list[tuple[str, int]]
    """Innermost frame of each sample: where the interpreter was."""
    by_package: list[tuple[str, int]]
    """Package of that frame."""
    ours: list[tuple[str, int]]
    """First-party functions run by the event loop, inclusive: which of our steps cost most."""

    def render(self, top: int = 8) -> str:
        """A plain-text summary in shares of all samples, largest first."""
        lines = [f"{self.name}: {self.samples} samples holding the GIL"]
        for title, ranked in (
            ("by function (self)", self.by_function),
            ("by package (self)", self.by_package),
            ("our code (inclusive)", self.ours),
        ):
            lines.append(f"  {title}:")
            lines += [
                f"    {100 * n / max(self.samples, 1):5.1f}%  {what}" for what, n in ranked[:top]
            ]
        return "\n".join(lines)


def _package(path: str) -> str:
    """``fastapi`` for ``fastapi/routing.py`` (py-spy prints paths from the import root)."""
    return path.split("/", 1)[0].removesuffix(".py") if path else "?"


def _frame(text: str) -> tuple[str, str]:
    match = _FRAME.match(text)
    return (match["func"], match["file"]) if match else (text, "")


def _called_back(frames: list[tuple[str, str]]) -> set[str]:
    """First-party frames run by the event loop (entry points such as ``main`` are skipped)."""
    loop = next((i for i, (_, path) in enumerate(frames) if _package(path) in _LOOPS), len(frames))
    return {f"{func} ({path})" for func, path in frames[loop:] if _package(path) in FIRST_PARTY}


def read_profile(name: str, raw: Path) -> Profile:
    """Rank the collapsed stacks of ``raw`` (``frame;frame;...;leaf count`` per line)."""
    functions: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(text) for text in stack.split(";")]
        func, path = frames[-1]
        functions[f"{func} ({path})"] += int(count)
        packages[_package(path)] += int(count)
        ours.update(dict.fromkeys(_called_back(frames), int(count)))
    return Profile(
        name=name,
        samples=sum(packages.values()),
        by_function=functions.most_common(),
        by_package=packages.most_common(),
        ours=ours.most_common(),
    )
