"""The save-time probe of a user's regular expression, shared by guardrails and schemas.

A pattern that takes longer than ``PROBE_TIMEOUT_S`` on any of a few long, repetitive
probe strings backtracks catastrophically (``(a+)+$``) and is refused when saved, so a
request never meets it.
"""

from __future__ import annotations

from typing import Final

import regex

__all__ = ["SLOW_PATTERN", "too_slow"]

PROBE_TIMEOUT_S: Final = 0.05
_PROBES: Final = tuple(
    c * (1000 // len(c)) + "\x00!" for c in ("a", "x", "0", " ", ".", "-", "_", "ab", "a ", "a.")
)
#: The reason a refused pattern is given.
SLOW_PATTERN: Final = (
    "the pattern is too slow (catastrophic backtracking on a probe string); "
    "avoid nested repetition such as (a+)+"
)


def too_slow(compiled: regex.Pattern[str]) -> bool:
    """True when ``compiled`` needs more than ``PROBE_TIMEOUT_S`` on one of the probes."""
    for probe in _PROBES:
        try:
            compiled.search(probe, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            return True
    return False
