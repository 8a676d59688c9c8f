"""Finding personal data in text: e-mail addresses, phone numbers, payment cards, IBANs.

``PiiDetector(entities, region).find(text, final=...)`` returns the spans it found
and, for a stream, where the text must be held back because its tail could still
grow into (or change) a match. It is the matcher of the ``pii`` guardrail
(``edge.pipeline.guardrails``), which decides whether to block or to redact.

    email        a practical address regex (local part ``[A-Za-z0-9._%+-]{1,64}``,
                 dotted domain with a 2-63 letter top-level label), not RFC 5322's
                 every corner: quoted local parts and bare ``user@host`` are missed
    phone        ``phonenumbers.PhoneNumberMatcher`` (Google's libphonenumber port)
                 with leniency ``VALID``: numbers valid for their country, national
                 ones read in ``region``, ``+`` international ones anywhere; it skips
                 dates, times, prices and other digit runs that are not numbers
    credit_card  13 to 19 digits, optionally separated by single spaces or dashes,
                 not glued to other digits, that pass the Luhn check (one digit
                 repeated, e.g. ``0000 0000 0000 0000``, is not a card)
    iban         two letters, two check digits and the country's registry length
                 (SWIFT's IBAN registry), printed whole or in groups of four, that
                 pass the ISO 13616 mod-97 check

Overlaps go to the earlier span, then the longer one. Cost: one regex pass per
entity and one ``phonenumbers`` pass, linear in the text (about 0.15 s a MB for
phones, the slowest).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal

import phonenumbers
import regex

__all__ = [
    "ENTITIES",
    "MARKERS",
    "MAX_MATCH_CHARS",
    "Entity",
    "PiiDetector",
    "PiiSpan",
    "iban_valid",
    "luhn_valid",
    "merge_spans",
]

Entity = Literal["email", "phone", "credit_card", "iban"]
ENTITIES: Final[tuple[Entity, ...]] = ("email", "phone", "credit_card", "iban")

#: What a redacted match is replaced with.
MARKERS: Final[dict[Entity, str]] = {
    "email": "[REDACTED_EMAIL]",
    "phone": "[REDACTED_PHONE]",
    "credit_card": "[REDACTED_CARD]",
    "iban": "[REDACTED_IBAN]",
}

#: The longest text any entity can match (an e-mail address: 64 + 1 + 253), so the
#: most a stream ever has to hold back for personal data.
MAX_MATCH_CHARS: Final = 320

_EMAIL = regex.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9-])"
)
_CARD = regex.compile(r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)")
_IBAN = regex.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?"
)
# The tails that more text could still turn into a match of each entity: the start of
# an address ("bob", "bob@exa", "bob@example.com." + "au"), of a digit group
# ("4111 1111 "), of an IBAN ("DE", "DE89 3704 "), a run of phone characters.
_ALNUM: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PREFIXES: Final[dict[Entity, tuple[str, int, regex.Pattern[str]]]] = {
    "email": (
        _ALNUM + "._%+-@",
        MAX_MATCH_CHARS,
        regex.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}(?:@[A-Za-z0-9.-]{0,253})?\Z"),
    ),
    "credit_card": (
        "0123456789 -",
        40,
        regex.compile(r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){0,18}[ -]?\Z"),
    ),
    "iban": (
        _ALNUM + " ",
        48,
        regex.compile(
            r"(?<![A-Za-z0-9])(?:[A-Za-z]{1,2}|[A-Za-z]{2}\d{1,2}(?: ?[A-Za-z0-9]){0,30} ?)\Z"
        ),
    ),
    "phone": ("0123456789 \t().-/+", 33, regex.compile(r"(?:[+(]?\d[\d \t().\-/]{0,31}|[+(])\Z")),
}

#: IBAN length by country (SWIFT's IBAN registry).
_IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """``text[start:end]`` is personal data of kind ``entity``."""

    start: int
    end: int
    entity: Entity


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of digits; one digit repeated never passes."""
    if len(set(digits)) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: the registry length of the country and the mod-97 check (spaces ignored)."""
    compact = iban.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


class PiiDetector:
    """Finds the configured ``entities`` in a text (module docstring); immutable, shareable."""

    def __init__(self, entities: Collection[Entity], region: str = "US") -> None:
        self.entities = frozenset(entities)
        self.region = region

    def find(self, text: str, *, final: bool = True) -> tuple[list[PiiSpan], int]:
        """The matches in ``text`` (sorted, not overlapping) and the hold index.

        With ``final`` every match counts and the hold index is ``len(text)``. Without
        it (a stream's text so far) a match that reaches the end of ``text`` is left out
        (more text may change it), and the hold index is where the shortest tail that
        could still be part of a match begins: at most ``MAX_MATCH_CHARS`` back, and
        usually the last word or digit group.
        """
        spans: list[PiiSpan] = []
        hold = len(text)
        if "credit_card" in self.entities:
            for m in _CARD.finditer(text):
                if luhn_valid(regex.sub(r"[ -]", "", m.group())):
                    spans.append(PiiSpan(m.start(), m.end(), "credit_card"))
        if "iban" in self.entities:
            spans.extend(self._ibans(text))
        if "email" in self.entities:
            spans.extend(PiiSpan(m.start(), m.end(), "email") for m in _EMAIL.finditer(text))
        if "phone" in self.entities:
            for pm in phonenumbers.PhoneNumberMatcher(
                text, self.region, leniency=phonenumbers.Leniency.VALID
            ):
                spans.append(PiiSpan(pm.start, pm.end, "phone"))
        spans = merge_spans(spans)
        if not final:
            hold = self._hold(text)
            for span in spans:
                if span.start < hold < span.end:
                    hold = span.start
            spans = [s for s in spans if s.end <= hold]
        return spans, hold

    def _ibans(self, text: str) -> list[PiiSpan]:
        found = []
        for m in _IBAN.finditer(text):
            want = _IBAN_LENGTHS.get(m.group()[:2].upper())
            if want is None:
                continue
            # The greedy match may run past the IBAN into the next group: cut it at the
            # registry length, which must fall on a boundary (end or a space).
            seen, end = 0, m.start()
            for i in range(m.start(), m.end()):
                if text[i] != " ":
                    seen += 1
                    if seen == want:
                        end = i + 1
                        break
            if seen != want or (end < len(text) and text[end].isalnum()):
                continue
            if iban_valid(text[m.start() : end]):
                found.append(PiiSpan(m.start(), end, "iban"))
        return found

    def _hold(self, text: str) -> int:
        """Where the tail that could still become a match begins (``len(text)``: none)."""
        hold = len(text)
        for entity, (chars, longest, prefix) in _PREFIXES.items():
            if entity not in self.entities:
                continue
            # Only the trailing run of the entity's characters can be a prefix of a match.
            run = len(text) - len(text.rstrip(chars))
            if run and (m := prefix.search(text, len(text) - min(run, longest))) is not None:
                hold = min(hold, m.start())
        return hold


def merge_spans(spans: list[PiiSpan]) -> list[PiiSpan]:
    """``spans`` sorted, without overlaps: the earlier span wins, then the longer one."""
    kept: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, s.start - s.end)):
        if kept and span.start < kept[-1].end:
            continue
        kept.append(span)
    return kept
