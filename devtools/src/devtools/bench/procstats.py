"""CPU time and resident memory of whole process trees, read from ``/proc`` (Linux only).

A gateway is measured as trees: each named root pid (LiteLLM's master, each
Switchyard service, nats-server) together with every descendant alive at the
time of a reading. ``TreeMonitor`` brackets one measured interval:

    enter           CPU ticks (utime + stime) of every process in the trees
    while inside    a thread samples VmRSS of the trees; keeps each tree's peak
    settle()        waits (bounded) until the trees go idle, so work a request
                    leaves behind (billing's ledger write) is charged to it
    exit            CPU ticks again; the difference, per tree, is the interval's CPU

A process that starts inside the interval is charged from zero; one that exits
inside it loses what it used after the first reading (none of ours does).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["TreeMonitor", "TreeUsage", "cpu_ticks", "process_tree", "rss_by_root", "wait_idle"]

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards), or ``None``."""
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is parenthesised and may itself contain spaces and parentheses.
    return raw[raw.rindex(b")") + 2 :].decode().split()


def process_tree(roots: Mapping[str, int]) -> dict[int, str]:
    """``{pid: root name}`` for every live root and all of its descendants."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    owner: dict[int, str] = {}
    for name, root in roots.items():
        pending = [root] if _stat_fields(root) is not None else []
        while pending:
            pid = pending.pop()
            owner[pid] = name
            pending.extend(children.get(pid, ()))
    return owner


def cpu_ticks(pids: Iterable[int]) -> dict[int, int]:
    """``{pid: utime + stime}`` in clock ticks, for the pids that are still alive."""
    ticks: dict[int, int] = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # utime and stime are fields 14 and 15 of stat; fields[0] is field 3.
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def _rss_bytes(pid: int, page_size: int) -> int:
    try:
        statm = (_PROC / str(pid) / "statm").read_bytes().split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(statm[1]) * page_size


def rss_by_root(owner: Mapping[int, str], names: Iterable[str]) -> dict[str, int]:
    """Resident bytes (VmRSS) of each tree: ``owner`` is ``process_tree``'s answer,
    ``names`` its root names (a tree whose processes are all gone reads 0)."""
    page_size = os.sysconf("SC_PAGE_SIZE")
    by_root = dict.fromkeys(names, 0)
    for pid, name in owner.items():
        by_root[name] += _rss_bytes(pid, page_size)
    return by_root


def _mapped(pid: int) -> tuple[int, dict[str, int]]:
    """Anonymous resident bytes of ``pid`` and resident bytes per mapped file."""
    anonymous, files = 0, dict[str, int]()
    try:
        lines = (_PROC / str(pid) / "smaps").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0, {}
    path = ""
    for line in lines:
        head, _, rest = line.partition(" ")
        if not head.endswith(":"):  # a mapping's header: range perms offset dev inode [path]
            fields = rest.split(maxsplit=4)
            path = fields[4] if len(fields) > 4 and fields[4].startswith("/") else ""
        elif head == "Rss:" and path:
            files[path] = files.get(path, 0) + int(rest.split()[0]) * 1024
        elif head == "Anonymous:":
            size = int(rest.split()[0]) * 1024
            anonymous += size
            if path:  # a file mapping's pages written since (copy on write) are this process's
                files[path] -= size
    return anonymous, files


def resident_shared_once(pids: Iterable[int]) -> int:
    """Resident bytes of ``pids`` together, with each mapped file counted once.

    Summed ``VmRSS`` counts libpython, grpc's and pydantic-core's libraries and OpenSSL
    once per process that maps them, though the kernel holds them once. ``Pss`` would
    split them, but also with every other process on the machine that maps the same
    files (other checkouts' Python), so it depends on who else runs. This counts the
    anonymous pages of every process plus, for each file, the most any one of them has
    resident: what these processes hold, on any machine."""
    anonymous, files = 0, dict[str, int]()
    for pid in pids:
        anon, mapped = _mapped(pid)
        anonymous += anon
        for path, size in mapped.items():
            files[path] = max(files.get(path, 0), size)
    return anonymous + sum(files.values())


def wait_idle(
    roots: Mapping[str, int], *, max_s: float, window_s: float = 0.5, idle_share: float = 0.05
) -> float:
    """Wait until the trees use under ``idle_share`` of one core over ``window_s``.

    Returns how long they kept busy: 0 when the first window is already idle,
    about ``max_s`` when they never went idle.
    """
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    started = time.monotonic()
    owner = process_tree(roots)
    previous = sum(cpu_ticks(owner).values())
    while time.monotonic() - started < max_s:
        time.sleep(window_s)
        current = sum(cpu_ticks(owner).values())
        if (current - previous) / ticks_per_s < idle_share * window_s:
            return max(0.0, time.monotonic() - started - window_s)
        previous = current
    return time.monotonic() - started


@dataclass(frozen=True)
class TreeUsage:
    """What the trees used over one interval."""

    cpu_s: Mapping[str, float]
    """CPU seconds (user + system) per root name."""
    peak_rss: int
    """Largest sum of resident bytes over all trees seen by one sample."""
    peak_rss_by_root: Mapping[str, int]
    """Largest resident bytes of each tree seen by one sample."""
    settle_s: float
    """How long the trees kept busy after the load stopped (0 without ``settle``)."""

    @property
    def total_cpu_s(self) -> float:
        """CPU seconds of all trees together."""
        return sum(self.cpu_s.values())


class TreeMonitor:
    """Measures CPU and peak RSS of named process trees over one ``with`` block."""

    def __init__(self, roots: Mapping[str, int], *, sample_interval_s: float = 0.2) -> None:
        self._roots = dict(roots)
        self._interval = sample_interval_s
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")
        self._owner: dict[int, str] = {}
        self._before: dict[int, int] = {}
        self._peak = 0
        self._peak_by_root: dict[str, int] = dict.fromkeys(self._roots, 0)
        self._settle_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="rss-sampler", daemon=True)
        self._usage: TreeUsage | None = None

    def __enter__(self) -> TreeMonitor:
        self._owner = process_tree(self._roots)
        self._before = cpu_ticks(self._owner)
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        owner = process_tree(self._roots)
        after = cpu_ticks(owner)
        cpu = dict.fromkeys(self._roots, 0.0)
        for pid, ticks in after.items():
            cpu[owner[pid]] += (ticks - self._before.get(pid, 0)) / self._ticks_per_s
        self._usage = TreeUsage(
            cpu_s=cpu,
            peak_rss=self._peak,
            peak_rss_by_root=dict(self._peak_by_root),
            settle_s=self._settle_s,
        )

    @property
    def usage(self) -> TreeUsage:
        """The interval's figures; available once the ``with`` block has exited."""
        if self._usage is None:
            raise RuntimeError("TreeMonitor.usage is read after the with block")
        return self._usage

    def settle(self, *, max_s: float) -> float:
        """``wait_idle`` on the monitored trees, charging the work to this interval.

        Call it after the load stops; returns the seconds waited.
        """
        self._settle_s = wait_idle(self._roots, max_s=max_s)
        return self._settle_s

    def _sample_loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        # The set of pids is fixed at entry: gateways do not fork per request, and
        # rescanning /proc five times a second would cost CPU the gateways need.
        by_root = rss_by_root(self._owner, self._roots)
        self._peak = max(self._peak, sum(by_root.values()))
        for name, rss in by_root.items():
            self._peak_by_root[name] = max(self._peak_by_root[name], rss)
