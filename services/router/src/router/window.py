"""A sliding window of two counts, in O(1) per update: what breakers and the retry budget count.

The window is cut into ``SLOTS`` time slots of ``span / SLOTS`` seconds; a
slot older than the window is reset when its turn comes round again, so the
totals cover between ``span - span / SLOTS`` and ``span`` seconds of history.
That coarseness is the price of constant memory at any request rate.
"""

from __future__ import annotations

__all__ = ["SLOTS", "SlidingWindow"]

#: Time slots per window.
SLOTS = 10


class SlidingWindow:
    """Totals of two counts (``a``, ``b``) over the last ``span`` seconds of a monotonic clock."""

    __slots__ = ("_a", "_b", "_epochs", "_width", "span")

    def __init__(self, span: float) -> None:
        self.span = span
        self._width = span / SLOTS
        self._a = [0] * SLOTS
        self._b = [0] * SLOTS
        self._epochs = [-SLOTS] * SLOTS

    def add(self, now: float, *, a: int = 0, b: int = 0) -> None:
        """Count ``a`` and ``b`` at time ``now``."""
        epoch = int(now / self._width)
        slot = epoch % SLOTS
        if self._epochs[slot] != epoch:
            self._epochs[slot] = epoch
            self._a[slot] = self._b[slot] = 0
        self._a[slot] += a
        self._b[slot] += b

    def totals(self, now: float) -> tuple[int, int]:
        """``(a, b)`` summed over the slots still inside the window at ``now``."""
        oldest = int(now / self._width) - SLOTS
        a = b = 0
        for slot, epoch in enumerate(self._epochs):
            if epoch > oldest:
                a += self._a[slot]
                b += self._b[slot]
        return a, b
