"""An endpoint's guardrails: checks on the call's input and the model's output.

Configuration (the endpoint's ``guardrails``, a list; each item has a ``type``,
an optional ``name``, default the type, and ``applies_to``: ``input``,
``output`` or ``both``, the default)::

    {"type": "max_length", "max_chars": 4000}
    {"type": "blocked_terms", "terms": ["project x", "c++"]}
    {"type": "regex", "patterns": ["(?i)api[_-]?key"], "action": "block"}
    {"type": "pii", "entities": ["email", "phone", "credit_card", "iban"],
     "action": "redact", "region": "US"}

``compile_guardrails(raw)`` validates and compiles them, once per endpoint change;
a bad item raises ``InvalidRequest`` (400, code ``invalid_guardrails``) whose
``param`` and message name the field (``guardrails[1].patterns[0]``). The
compiled ``Guardrails`` is immutable and shared by every call of the endpoint.

What each type does:

    max_length     more than ``max_chars`` characters (input: of all the texts of
                   the call together) blocks
    blocked_terms  a term, case-insensitive (NFKC then Unicode casefold) and as whole
                   words: "secret" does not fire on "secrets" or "top_secret"; inside a
                   term any run of whitespace matches any run of whitespace
    regex          a search of each pattern (the ``regex`` package, Python syntax)
                   that finds a non-empty match blocks; action ``block`` only
    pii            ``edge.pipeline.pii`` finds e-mail addresses, phone numbers,
                   Luhn-valid card numbers and mod-97-valid IBANs; ``block`` refuses
                   the text, ``redact`` replaces each with ``[REDACTED_EMAIL]``,
                   ``[REDACTED_PHONE]``, ``[REDACTED_CARD]`` or ``[REDACTED_IBAN]``

Order: every blocking guardrail looks at the text as received (a redaction never
hides something from a block); the first in list order that fires is the one
reported. When none fires the redactions are applied. ``check_input(texts)``
returns the redacted texts; ``check_output(text)`` the redacted content;
``output_stream()`` an ``OutputRedactor`` for a stream's content deltas.

A block raises ``GuardrailBlocked`` (422, code ``guardrail_blocked``) naming the
guardrail, its type, its index in the list and the direction, never quoting the text. Every guardrail
that fires counts once per check in
``switchyard_edge_guardrail_triggered_total{guardrail_type,direction,action}``
(action ``block``, ``redact`` or ``timeout``; the configured name is not a label).

Regex time bound: the patterns of one guardrail get ``REGEX_TIMEOUT_S`` (0.1 s)
for one check, all its texts and patterns together (the ``regex`` package's
``timeout``); a check that runs out blocks (fails closed) with reason
``timeout``. A pattern is refused at save time if it does not compile, can match
the empty string, or does not finish within 50 ms on one of a few probe strings
(catastrophic backtracking such as ``(a+)+$``).

Streams (``OutputRedactor``): each delta is scanned together with the text held
back so far and the last 64 characters already sent; what is sure is sent at
once, redacted, and only the shortest tail that could still become a match is held
back: usually the last word or digit group (a word may become an e-mail address,
digits a card or phone number, a word a blocked term), and at most
``HOLD_MAX_CHARS`` (320, the longest e-mail address) characters. ``finish`` sends
the rest. A blocking guardrail that fires mid-stream raises from ``feed``: the held
text that fired it has not been sent, the text before it has. A regex match longer
than the hold bound may be caught after part of it was sent, or missed.
"""

from __future__ import annotations

import time
import unicodedata
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, Protocol

import phonenumbers
import regex
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from gateway_common.errors import GuardrailBlocked, InvalidRequest

from ._patterns import SLOW_PATTERN, too_slow
from .pii import ENTITIES, MARKERS, MAX_MATCH_CHARS, Entity, PiiDetector, PiiSpan, merge_spans

__all__ = [
    "HOLD_MAX_CHARS",
    "REGEX_TIMEOUT_S",
    "AppliesTo",
    "BlockedTermsGuardrail",
    "Direction",
    "GuardrailConfig",
    "GuardrailMetrics",
    "Guardrails",
    "MaxLengthGuardrail",
    "OutputRedactor",
    "PiiGuardrail",
    "RegexGuardrail",
    "compile_guardrails",
]

Direction = Literal["input", "output"]
AppliesTo = Literal["input", "output", "both"]

MAX_GUARDRAILS: Final = 32
MAX_TERMS: Final = 1000
MAX_TERM_CHARS: Final = 100
MAX_TERM_TOKENS: Final = 8
MAX_PATTERNS: Final = 20
MAX_PATTERN_CHARS: Final = 1000
#: The time the patterns of one regex guardrail get for one check.
REGEX_TIMEOUT_S: Final = 0.1
#: The most a stream holds back (the longest e-mail address).
HOLD_MAX_CHARS: Final = MAX_MATCH_CHARS
_CONTEXT_CHARS: Final = 64
_CONFIG_CODE: Final = "invalid_guardrails"
_TOKEN = regex.compile(r"\w+|[^\w\s]")
_WORD = regex.compile(r"\w")
_ENTITY_WORDS: Final[dict[Entity, str]] = {
    "email": "an e-mail address",
    "phone": "a phone number",
    "credit_card": "a payment card number",
    "iban": "an IBAN",
}


def _term(value: str) -> str:
    tokens = _TOKEN.findall(value)
    if not tokens:
        raise PydanticCustomError("blank_term", "a term needs a letter, digit or symbol")
    if len(tokens) > MAX_TERM_TOKENS:
        raise PydanticCustomError(
            "long_term", "a term has at most {max} words and symbols", {"max": MAX_TERM_TOKENS}
        )
    return value


def _region(value: str) -> str:
    if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise PydanticCustomError("region", "not a region phonenumbers knows (ISO 3166 alpha-2)")
    return value.upper()


class _Guardrail(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    type: str
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[\w .:-]+$",
        description="Named in the error when it blocks; default: the type.",
    )
    applies_to: AppliesTo = Field(
        default="both", description="Which side it checks: input, output or both."
    )

    @property
    def label(self) -> str:
        """The name errors and logs use."""
        return self.name or self.type


class MaxLengthGuardrail(_Guardrail):
    """Blocks a text longer than ``max_chars`` characters."""

    type: Literal["max_length"]
    max_chars: int = Field(
        ge=1, le=16_777_216, description="Most characters allowed (input: all texts together)."
    )


class BlockedTermsGuardrail(_Guardrail):
    """Blocks a text that contains one of ``terms`` (case-insensitive, whole words)."""

    type: Literal["blocked_terms"]
    terms: list[
        Annotated[str, Field(min_length=1, max_length=MAX_TERM_CHARS), AfterValidator(_term)]
    ] = Field(min_length=1, max_length=MAX_TERMS, description="Words or phrases that block.")


class RegexGuardrail(_Guardrail):
    """Blocks a text in which one of ``patterns`` finds a match."""

    type: Literal["regex"]
    patterns: list[Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_CHARS)]] = Field(
        min_length=1,
        max_length=MAX_PATTERNS,
        description="Regular expressions (Python syntax, searched anywhere in the text).",
    )
    action: Literal["block"] = Field(default="block", description="Only block.")


class PiiGuardrail(_Guardrail):
    """Blocks or redacts personal data (``edge.pipeline.pii``)."""

    type: Literal["pii"]
    entities: list[Entity] = Field(
        default_factory=lambda: list(ENTITIES),
        min_length=1,
        description="Which of email, phone, credit_card, iban (default: all).",
    )
    action: Literal["block", "redact"] = Field(default="block", description="block or redact.")
    region: Annotated[str, AfterValidator(_region)] = Field(
        default="US",
        min_length=2,
        max_length=2,
        description="Country whose national phone numbers are recognised (others need +).",
    )


GuardrailConfig = Annotated[
    MaxLengthGuardrail | BlockedTermsGuardrail | RegexGuardrail | PiiGuardrail,
    Field(discriminator="type"),
]
_TYPES: Final = ("max_length", "blocked_terms", "regex", "pii")
_ADAPTER: Final = TypeAdapter(list[GuardrailConfig])


class GuardrailMetrics(Protocol):
    """Where fired guardrails are counted (``edge.metrics.EdgeMetrics``)."""

    def count_guardrail(self, *, guardrail_type: str, direction: str, action: str) -> None: ...


class _Timeout(Exception):
    """A regex check ran out of its time."""


class _Check:
    """One compiled guardrail. ``scan`` answers (fired, hold) for a blocking one."""

    def __init__(self, config: _Guardrail) -> None:
        self.config = config
        self.kind = config.type
        self.label = config.label
        #: Its place in the endpoint's ``guardrails`` list (set by ``compile_guardrails``).
        self.index = 0
        self.directions: frozenset[str] = frozenset(
            ("input", "output") if config.applies_to == "both" else (config.applies_to,)
        )

    @property
    def redacts(self) -> bool:
        return False

    def scan(self, text: str, *, final: bool, deadline: float) -> tuple[bool, int]:
        """Whether it fires on ``text``; without ``final``, also where to hold back from."""
        raise NotImplementedError

    def blocked(self, direction: str, *, reason: str = "matched", detail: str) -> GuardrailBlocked:
        return GuardrailBlocked(
            f"The {direction} was blocked by guardrail '{self.label}'"
            f"{'' if self.label == self.kind else f' ({self.kind})'}: {detail}.",
            guardrail=self.label,
            guardrail_type=self.kind,
            direction=direction,
            reason=reason,
            index=self.index,
        )


class _MaxLength(_Check):
    def __init__(self, config: MaxLengthGuardrail) -> None:
        super().__init__(config)
        self.max_chars = config.max_chars

    def over(self, chars: int, direction: str) -> GuardrailBlocked:
        return self.blocked(
            direction, detail=f"{chars} characters, more than the {self.max_chars} allowed"
        )


class _Terms(_Check):
    """Terms as canonical token strings: NFKC + casefold tokens, " " where whitespace was."""

    def __init__(self, config: BlockedTermsGuardrail) -> None:
        super().__init__(config)
        canonical = {_canonical(term) for term in config.terms}
        self._terms = frozenset(canonical)
        self._sorted = sorted(canonical)
        self._last = frozenset(_norm(_TOKEN.findall(term)[-1]) for term in config.terms)
        self._width = max(len(_TOKEN.findall(term)) for term in config.terms)

    def scan(self, text: str, *, final: bool, deadline: float) -> tuple[bool, int]:
        hold = len(text)
        window: deque[tuple[str, int, int]] = deque(maxlen=self._width)
        for m in _TOKEN.finditer(text):
            window.append((_norm(m.group()), m.start(), m.end()))
            if window[-1][0] not in self._last:
                continue
            canon = ""
            for j in range(len(window) - 1, -1, -1):
                token, start, end = window[j]
                gap = "" if j == len(window) - 1 else (" " if window[j + 1][1] > end else "")
                canon = token + gap + canon
                if canon in self._terms:
                    if not final and m.end() == len(text) and _WORD.match(m.group()[-1]):
                        hold = min(hold, start)  # "secret" may yet become "secrets"
                    else:
                        return True, hold
        if not final:
            hold = min(hold, self._tail(text, window))
        return False, hold

    def _tail(self, text: str, window: deque[tuple[str, int, int]]) -> int:
        """Where the earliest token run that could still become a term begins."""
        if not window:
            return len(text)
        trailing_space = window[-1][2] < len(text)
        for j in range(len(window)):
            canon = ""
            for k in range(j, len(window)):
                if k > j:
                    canon += " " if window[k][1] > window[k - 1][2] else ""
                canon += window[k][0]
            prefix = canon + " " if trailing_space else canon
            i = bisect_left(self._sorted, prefix)
            if i < len(self._sorted) and self._sorted[i].startswith(prefix):
                return window[j][1]
        return len(text)


class _Regex(_Check):
    def __init__(self, config: RegexGuardrail, patterns: Sequence[regex.Pattern[str]]) -> None:
        super().__init__(config)
        self._patterns = tuple(patterns)

    def scan(self, text: str, *, final: bool, deadline: float) -> tuple[bool, int]:
        hold = len(text)
        for pattern in self._patterns:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout
            try:
                for m in pattern.finditer(text, partial=not final, timeout=remaining):
                    if m.partial or (not final and m.end() == len(text)):
                        hold = min(hold, m.start())
                        break
                    if m.end() > m.start():
                        return True, hold
            except TimeoutError as exc:
                raise _Timeout from exc
        return False, hold


class _Pii(_Check):
    def __init__(self, config: PiiGuardrail) -> None:
        super().__init__(config)
        self.detector = PiiDetector(config.entities, config.region)
        self._redacts = config.action == "redact"

    @property
    def redacts(self) -> bool:
        return self._redacts

    def scan(self, text: str, *, final: bool, deadline: float) -> tuple[bool, int]:
        spans, hold = self.detector.find(text, final=final)
        return bool(spans), hold

    def pii_blocked(self, direction: str, text: str) -> GuardrailBlocked:
        spans, _ = self.detector.find(text)
        kinds = sorted({s.entity for s in spans}, key=ENTITIES.index)
        words = ", ".join(_ENTITY_WORDS[k] for k in kinds) or "personal data"
        return self.blocked(direction, detail=f"it contains {words}")


class Guardrails:
    """An endpoint's compiled guardrails (module docstring); immutable, shared by its calls."""

    def __init__(self, checks: Sequence[_Check] = ()) -> None:
        self._checks = tuple(checks)
        self._by_direction: dict[str, tuple[_Check, ...]] = {
            d: tuple(c for c in self._checks if d in c.directions) for d in ("input", "output")
        }

    def __bool__(self) -> bool:
        return bool(self._checks)

    def applies_to(self, direction: Direction) -> bool:
        """Whether any guardrail checks ``direction``."""
        return bool(self._by_direction[direction])

    def dump(self) -> list[dict[str, Any]]:
        """The configuration with its defaults filled in (what an admin API echoes)."""
        return [c.config.model_dump(mode="json") for c in self._checks]

    def check_input(
        self, texts: Sequence[str], *, metrics: GuardrailMetrics | None = None
    ) -> list[str]:
        """``texts`` (the call's message contents) redacted, or ``GuardrailBlocked``."""
        return self._check(texts, "input", metrics)

    def check_output(self, text: str, *, metrics: GuardrailMetrics | None = None) -> str:
        """The model's content redacted, or ``GuardrailBlocked``."""
        return self._check([text], "output", metrics)[0]

    def output_stream(self, *, metrics: GuardrailMetrics | None = None) -> OutputRedactor:
        """A redactor for one stream's content deltas (module docstring: Streams)."""
        return OutputRedactor(self._by_direction["output"], metrics)

    def _check(
        self, texts: Sequence[str], direction: str, metrics: GuardrailMetrics | None
    ) -> list[str]:
        checks = self._by_direction[direction]
        if not checks:
            return list(texts)
        for check in checks:
            if isinstance(check, _MaxLength):
                chars = sum(len(t) for t in texts)
                if chars > check.max_chars:
                    _count(metrics, check, direction, "block")
                    raise check.over(chars, direction)
            elif not check.redacts:
                deadline = time.monotonic() + REGEX_TIMEOUT_S
                for text in texts:
                    _block_if_fired(check, text, direction, metrics, final=True, deadline=deadline)
        redactors = [c for c in checks if isinstance(c, _Pii) and c.redacts]
        if not redactors:
            return list(texts)
        out = []
        fired: set[int] = set()
        for text in texts:
            found: list[PiiSpan] = []
            for i, check in enumerate(redactors):
                spans, _ = check.detector.find(text)
                if spans:
                    fired.add(i)
                    found.extend(spans)
            out.append(_redact(text, merge_spans(found), 0, len(text)))
        for i in sorted(fired):
            _count(metrics, redactors[i], direction, "redact")
        return out


class OutputRedactor:
    """Checks and redacts one stream's content as it arrives (module docstring: Streams).

    ``feed(delta)`` returns the text that can be sent now (possibly ``""``), or raises
    ``GuardrailBlocked``; ``finish()`` returns the held-back rest, checked as final.
    """

    def __init__(self, checks: Sequence[_Check], metrics: GuardrailMetrics | None) -> None:
        self._checks = tuple(checks)
        self._metrics = metrics
        self._pending = ""
        self._context = ""
        self._chars = 0
        self._counted: set[int] = set()

    @property
    def held(self) -> int:
        """How many characters are held back now."""
        return len(self._pending)

    def feed(self, delta: str) -> str:
        """The sendable text after ``delta`` arrived."""
        if not self._checks:
            return delta
        if not delta:
            return ""
        self._chars += len(delta)
        for check in self._checks:
            if isinstance(check, _MaxLength) and self._chars > check.max_chars:
                self._count(check, "block")
                raise check.over(self._chars, "output")
        return self._advance(self._pending + delta, final=False)

    def finish(self) -> str:
        """The rest of the stream, checked and redacted as the end of the content."""
        if not self._checks or not self._pending:
            return ""
        return self._advance(self._pending, final=True)

    def _advance(self, text: str, *, final: bool) -> str:
        window = self._context + text
        off = len(self._context)
        hold = len(window)
        deadline = time.monotonic() + REGEX_TIMEOUT_S
        spans: list[PiiSpan] = []
        owners: dict[PiiSpan, int] = {}
        for i, check in enumerate(self._checks):
            if isinstance(check, _MaxLength):
                continue
            if isinstance(check, _Pii) and check.redacts:
                found, h = check.detector.find(window, final=final)
                for span in found:
                    owners.setdefault(span, i)
                spans.extend(found)
            else:
                h = _block_if_fired(
                    check, window, "output", self._metrics, final=final, deadline=deadline
                )
            hold = min(hold, h)
        spans = merge_spans(spans)
        if final:
            hold = len(window)
        else:
            hold = max(hold, len(window) - HOLD_MAX_CHARS, off)
            for span in spans:  # never cut a match in two: hold it whole
                if span.start < hold < span.end:
                    hold = max(span.start, off)
        for span in spans:
            if span.end > off and span.end <= hold and owners[span] not in self._counted:
                self._counted.add(owners[span])
                self._count(self._checks[owners[span]], "redact")
        out = _redact(window, spans, off, hold)
        self._context = window[max(0, hold - _CONTEXT_CHARS) : hold]
        self._pending = window[hold:]
        return out

    def _count(self, check: _Check, action: str) -> None:
        _count(self._metrics, check, "output", action)


def compile_guardrails(raw: object, *, field: str = "guardrails") -> Guardrails:
    """Validate and compile an endpoint's ``guardrails`` (``None``: none).

    Raises ``InvalidRequest`` (400, code ``invalid_guardrails``) naming the first bad
    field, e.g. ``guardrails[1].patterns[0]``, in ``param`` and in the message.
    """
    if raw is None:
        return Guardrails()
    if not isinstance(raw, list):
        raise _config_error(field, "expected a list of guardrails")
    if len(raw) > MAX_GUARDRAILS:
        raise _config_error(field, f"at most {MAX_GUARDRAILS} guardrails")
    try:
        configs = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        path, message = _pydantic_error(field, error)
        raise _config_error(path, message) from None
    checks: list[_Check] = []
    for i, config in enumerate(configs):
        if isinstance(config, MaxLengthGuardrail):
            checks.append(_MaxLength(config))
        elif isinstance(config, BlockedTermsGuardrail):
            checks.append(_Terms(config))
        elif isinstance(config, RegexGuardrail):
            patterns = [
                _compile_pattern(p, f"{field}[{i}].patterns[{j}]")
                for j, p in enumerate(config.patterns)
            ]
            checks.append(_Regex(config, patterns))
        else:
            checks.append(_Pii(config))
        checks[-1].index = i
    return Guardrails(checks)


def _compile_pattern(pattern: str, path: str) -> regex.Pattern[str]:
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise _config_error(path, f"not a valid regular expression: {exc}") from None
    if compiled.fullmatch("") is not None:
        raise _config_error(path, "the pattern matches the empty string")
    if too_slow(compiled):
        raise _config_error(path, SLOW_PATTERN)
    return compiled


def _pydantic_error(field: str, error: Any) -> tuple[str, str]:
    loc = list(error["loc"])
    if len(loc) >= 2 and loc[1] in _TYPES:
        del loc[1]  # the discriminator's branch, not a field
    path = field + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in loc)
    kind = error["type"]
    if kind == "union_tag_not_found":
        return f"{path}.type", f"missing 'type' (one of {', '.join(_TYPES)})"
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        return f"{path}.type", f"unknown guardrail type {tag!r} (one of {', '.join(_TYPES)})"
    if kind == "extra_forbidden":
        return path, "unknown field"
    return path, str(error["msg"])


def _config_error(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {message}", param=path, code=_CONFIG_CODE)


def _block_if_fired(
    check: _Check,
    text: str,
    direction: str,
    metrics: GuardrailMetrics | None,
    *,
    final: bool,
    deadline: float,
) -> int:
    """Raise if the blocking ``check`` fires on ``text``; else its hold index."""
    try:
        fired, hold = check.scan(text, final=final, deadline=deadline)
    except _Timeout:
        _count(metrics, check, direction, "timeout")
        raise check.blocked(
            direction,
            reason="timeout",
            detail=f"the check did not finish within {int(REGEX_TIMEOUT_S * 1000)} ms",
        ) from None
    if fired:
        _count(metrics, check, direction, "block")
        if isinstance(check, _Pii):
            raise check.pii_blocked(direction, text)
        detail = "it contains a blocked term" if isinstance(check, _Terms) else "a pattern matched"
        raise check.blocked(direction, detail=detail)
    return hold


def _count(metrics: GuardrailMetrics | None, check: _Check, direction: str, action: str) -> None:
    if metrics is not None:
        metrics.count_guardrail(guardrail_type=check.kind, direction=direction, action=action)


def _redact(text: str, spans: Sequence[PiiSpan], start: int, end: int) -> str:
    """``text[start:end]`` with each span in it replaced by its marker."""
    pieces = []
    pos = start
    for span in spans:
        if span.end <= start or span.start >= end:
            continue
        pieces.append(text[pos : max(span.start, start)])
        pieces.append(MARKERS[span.entity])
        pos = span.end
    pieces.append(text[pos:end])
    return "".join(pieces)


def _norm(token: str) -> str:
    if token.isascii():
        return token.lower()
    return unicodedata.normalize("NFKC", token).casefold()


def _canonical(text: str) -> str:
    """Tokens normalized, joined by " " where whitespace separated them, else nothing."""
    out = ""
    last_end = -1
    for m in _TOKEN.finditer(text):
        if out and m.start() > last_end:
            out += " "
        out += _norm(m.group())
        last_end = m.end()
    return out
