"""JetStream counters behind the ``limits`` package's async storage interface.

Every edge replica counts in the same place: a JetStream *counter* stream
(nats-server 2.12+, ADR-49). A publish carrying ``Nats-Incr: +N`` (or ``-N``) adds
N to its subject's total atomically, on the server, and the publish ack answers the
new total. One round trip, no compare-and-swap retries, so concurrent increments
from any number of edges serialize on the server and each sees a distinct total:

    edge A ──Nats-Incr:+1──▶ ratelimit.minute.v1.key:k1.requests.29012345 ──▶ {"val":"7"}
    edge B ──Nats-Incr:+1──▶            (same subject)                    ──▶ {"val":"8"}

Windows are aligned to the clock (``window_start = floor(now / window) * window``:
minutes start at :00, days at 00:00 UTC) and the window's index is the last token
of the subject, so all edges agree on which counter a moment belongs to without
talking to each other, and a new window is simply a new subject starting at 0.
Old subjects are aged out by the stream's ``max_age`` (counter streams do not
allow per-message TTLs), one stream per window length (``gateway_common.nats.
RATELIMIT_STREAMS``).

The key is the one ``limits`` builds (``RateLimitItem.key_for``:
``namespace/identifiers.../amount/multiples/granularity``). The subject keeps the
namespace and identifiers and the window, not the amount: changing a limit in the
middle of a window keeps the window's count.

``NatsCounterStorage`` implements ``limits.aio.storage.Storage`` so that
``limits.aio.strategies.FixedWindowRateLimiter`` runs unchanged on it. Beyond the
interface it offers ``add`` (an increment into an explicit window: rollbacks and
token settlements must land in the window of the original hit even when the clock
has moved on) and ``take_hit`` (the window and total of the increment that a
strategy call just made, which the strategy's ``bool`` does not carry).
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import orjson
from limits.aio.storage import Storage
from limits.limits import TIME_TYPES
from nats.aio.client import Client
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from gateway_common import subjects
from gateway_common.nats import RATELIMIT_STREAMS

__all__ = ["Clock", "CountersUnavailable", "Hit", "NatsCounterStorage", "window_start"]

#: Wall-clock seconds since the epoch (``time.time``); tests inject their own.
Clock = Callable[[], float]

#: Window length in seconds -> (stream, subject prefix).
_WINDOWS: dict[int, tuple[str, str]] = {
    60: (subjects.RATELIMIT_MINUTE_STREAM, subjects.RATELIMIT_MINUTE_PREFIX),
    86_400: (subjects.RATELIMIT_DAY_STREAM, subjects.RATELIMIT_DAY_PREFIX),
}
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_:-]+")
#: ``take_hit`` entries are read right after the increment that wrote them; a
#: caller that never takes its hits must not grow this without bound.
_MAX_PENDING_HITS = 4096


class CountersUnavailable(Exception):
    """NATS did not answer in time, is disconnected, or refused the operation."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One increment's result: the window it landed in and the counter's new total."""

    key: str
    window_s: int
    window_start: int
    value: int

    @property
    def window_end(self) -> int:
        """Epoch second at which this window ends and the next starts at zero."""
        return self.window_start + self.window_s


def window_start(now: float, window_s: int) -> int:
    """The start (epoch seconds) of the clock-aligned window of length ``window_s`` at ``now``."""
    return math.floor(now / window_s) * window_s


def _window_of_key(key: str) -> int:
    """The window length a ``limits`` key names (its last two parts: multiples, granularity)."""
    parts = key.rsplit("/", 3)
    if len(parts) != 4 or parts[3] not in TIME_TYPES or not parts[2].isdigit():
        raise ValueError(f"not a limits key: {key!r}")
    return TIME_TYPES[parts[3]].seconds * int(parts[2])


def _token(part: str) -> str:
    """One subject token for one key part, injectively (``~`` + base64url when unsafe)."""
    if _SAFE_TOKEN.fullmatch(part):
        return part
    return "~" + base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")


class NatsCounterStorage(Storage):
    """``limits`` async storage on JetStream counter streams (see the module docstring).

    Every operation is one NATS request bounded by ``timeout_s``; any failure to get
    an answer (timeout, no connection, no stream, an error reply) raises
    ``CountersUnavailable``, which the caller turns into its fail mode. Only window
    lengths with a declared stream (a minute, a day) are supported: another raises
    ``ValueError``. The streams must exist (``RateLimiter.start`` declares them).
    """

    def __init__(self, nc: Client, *, timeout_s: float = 0.1, clock: Clock = time.time) -> None:
        super().__init__(wrap_exceptions=False)
        self._nc = nc
        self._timeout_s = timeout_s
        self._clock = clock
        self._hits: dict[str, Hit] = {}

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return CountersUnavailable

    def subject(self, key: str, window_s: int, start: int) -> str:
        """The counter subject of ``key`` in the window of length ``window_s`` starting at ``start``."""
        try:
            _, prefix = _WINDOWS[window_s]
        except KeyError:
            raise ValueError(f"no counter stream for {window_s} s windows") from None
        ids = key.rsplit("/", 3)[0].split("/")  # namespace and identifiers, without the amount
        return ".".join([prefix, *(_token(part) for part in ids), str(start // window_s)])

    async def add(self, key: str, *, window_s: int, start: int, amount: int) -> Hit:
        """Add ``amount`` (may be negative or zero) to ``key``'s counter of one given window."""
        subject = self.subject(key, window_s, start)
        try:
            reply = await self._nc.request(
                subject, b"", timeout=self._timeout_s, headers={"Nats-Incr": f"{amount:+d}"}
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise CountersUnavailable(f"{type(exc).__name__} on {subject}") from exc
        try:
            ack = orjson.loads(reply.data)
            value = int(ack["val"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CountersUnavailable(
                f"unexpected reply on {subject}: {reply.data[:200]!r}"
            ) from exc
        return Hit(key=key, window_s=window_s, window_start=start, value=value)

    def take_hit(self, key: str) -> Hit | None:
        """The ``Hit`` of the last ``incr`` of ``key``, removed; read it before any ``await``.

        ``FixedWindowRateLimiter.hit`` returns only whether the hit fitted. Taken with no
        ``await`` between the strategy call's return and this one, the entry is that
        call's own: no other task can run in between.
        """
        return self._hits.pop(key, None)

    # -- limits.aio.storage.Storage -------------------------------------------------

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s counter in the current window of ``expiry`` seconds."""
        window_s = int(expiry)
        hit = await self.add(
            key, window_s=window_s, start=window_start(self._clock(), window_s), amount=amount
        )
        if len(self._hits) >= _MAX_PENDING_HITS:
            self._hits.clear()
        self._hits[key] = hit
        return hit.value

    async def get(self, key: str) -> int:
        """``key``'s count in the current window (0 when nothing was counted yet)."""
        window_s = _window_of_key(key)
        stream, _ = _WINDOWS[window_s]
        subject = self.subject(key, window_s, window_start(self._clock(), window_s))
        js = self._nc.jetstream(timeout=self._timeout_s)
        try:
            msg = await js.get_last_msg(stream, subject, direct=True)
        except NotFoundError:
            return 0
        except (nats.errors.Error, JetStreamError, TimeoutError) as exc:
            raise CountersUnavailable(f"{type(exc).__name__} reading {subject}") from exc
        try:
            return int(orjson.loads(msg.data or b"")["val"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CountersUnavailable(f"unexpected counter on {subject}") from exc

    async def get_expiry(self, key: str) -> float:
        """When the current window of ``key`` ends (epoch seconds; no NATS call)."""
        window_s = _window_of_key(key)
        return float(window_start(self._clock(), window_s) + window_s)

    async def check(self) -> bool:
        """True when every counter stream answers its info request in time."""
        js = self._nc.jetstream(timeout=self._timeout_s)
        try:
            for config in RATELIMIT_STREAMS:
                assert config.name is not None
                await js.stream_info(config.name)
        except (nats.errors.Error, JetStreamError, TimeoutError):
            return False
        return True

    async def reset(self) -> int | None:
        """Drop every counter of every window (operator use); answers how many went."""
        js = self._nc.jetstream(timeout=self._timeout_s)
        purged = 0
        try:
            for config in RATELIMIT_STREAMS:
                assert config.name is not None
                purged += (await js.stream_info(config.name)).state.messages
                await js.purge_stream(config.name)
        except (nats.errors.Error, JetStreamError, TimeoutError) as exc:
            raise CountersUnavailable(f"{type(exc).__name__} purging counters") from exc
        return purged

    async def clear(self, key: str) -> None:
        """Drop ``key``'s counter of the current window (it starts again from 0)."""
        window_s = _window_of_key(key)
        stream, _ = _WINDOWS[window_s]
        subject = self.subject(key, window_s, window_start(self._clock(), window_s))
        js = self._nc.jetstream(timeout=self._timeout_s)
        try:
            await js.purge_stream(stream, subject=subject)
        except (nats.errors.Error, JetStreamError, TimeoutError) as exc:
            raise CountersUnavailable(f"{type(exc).__name__} clearing {subject}") from exc
