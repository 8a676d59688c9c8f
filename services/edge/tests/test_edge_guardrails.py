"""Endpoint guardrails (``edge.pipeline.guardrails``): config checks at save time, each type
on input and output, the regex time bound, the stream redactor, and the metric."""

from __future__ import annotations

import random
import time

import pytest

from edge.metrics import EdgeMetrics
from edge.pipeline.guardrails import (
    HOLD_MAX_CHARS,
    REGEX_TIMEOUT_S,
    Guardrails,
    compile_guardrails,
)
from edge.pipeline.pii import iban_valid, luhn_valid
from gateway_common.errors import GuardrailBlocked, InvalidRequest

pytestmark = pytest.mark.timeout(60)

EMAIL = "alice.smith+tag@mail.example.org"
CARD = "4111 1111 1111 1111"
IBAN = "DE89 3704 0044 0532 0130 00"
PHONE = "(415) 555-2671"


def redact(**extra: object) -> Guardrails:
    return compile_guardrails([{"type": "pii", "action": "redact", **extra}])


def blocked(guardrails: Guardrails, text: str, direction: str = "input") -> GuardrailBlocked:
    with pytest.raises(GuardrailBlocked) as info:
        if direction == "input":
            guardrails.check_input([text])
        else:
            guardrails.check_output(text)
    return info.value


def stream(guardrails: Guardrails, deltas: list[str], **kw: object) -> list[str]:
    redactor = guardrails.output_stream(**kw)  # type: ignore[arg-type]
    return [redactor.feed(d) for d in deltas] + [redactor.finish()]


def sample(metrics: EdgeMetrics, **labels: str) -> float:
    value = metrics.registry.get_sample_value("switchyard_edge_guardrail_triggered_total", labels)
    return value or 0.0


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"type": "max_length"}, "guardrails"),
        ([{"type": "sentiment"}], "guardrails[0].type"),
        ([{"max_chars": 5}], "guardrails[0].type"),
        ([{"type": "max_length"}], "guardrails[0].max_chars"),
        ([{"type": "max_length", "max_chars": 0}], "guardrails[0].max_chars"),
        ([{"type": "max_length", "max_chars": "10"}], "guardrails[0].max_chars"),
        ([{"type": "max_length", "max_chars": 9, "mode": "x"}], "guardrails[0].mode"),
        (
            [{"type": "max_length", "max_chars": 9, "applies_to": "sideways"}],
            "guardrails[0].applies_to",
        ),
        ([{"type": "blocked_terms", "terms": []}], "guardrails[0].terms"),
        ([{"type": "blocked_terms", "terms": ["ok", "  "]}], "guardrails[0].terms[1]"),
        ([{"type": "pii", "entities": ["email", "ssn"]}], "guardrails[0].entities[1]"),
        ([{"type": "pii", "action": "mask"}], "guardrails[0].action"),
        ([{"type": "pii", "region": "ZZ"}], "guardrails[0].region"),
        ([{"type": "regex", "patterns": ["x"], "action": "redact"}], "guardrails[0].action"),
        (
            [{"type": "max_length", "max_chars": 9}, {"type": "regex", "patterns": ["ok", "(un"]}],
            "guardrails[1].patterns[1]",
        ),
        ([{"type": "regex", "patterns": ["a*"]}], "guardrails[0].patterns[0]"),
        ([{"type": "regex", "patterns": ["(a+)+$"]}], "guardrails[0].patterns[0]"),
        ([{"type": "pii", "name": "bad\nname"}], "guardrails[0].name"),
    ],
)
def test_an_invalid_config_is_refused_naming_the_field(raw: object, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        compile_guardrails(raw)
    err = info.value
    assert (err.http_status, err.code, err.param) == (400, "invalid_guardrails", param)
    assert err.message.startswith(f"{param}: ")


def test_a_catastrophic_pattern_is_refused_at_save_time_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="catastrophic backtracking"):
        compile_guardrails([{"type": "regex", "patterns": ["(a+)+$"]}])
    assert time.monotonic() - started < 2


def test_defaults_are_filled_in_and_none_means_no_guardrails() -> None:
    assert not compile_guardrails(None)
    assert not compile_guardrails([])
    g = compile_guardrails(
        [{"type": "pii"}, {"type": "max_length", "max_chars": 5, "name": "short"}]
    )
    assert g.dump() == [
        {
            "type": "pii",
            "name": None,
            "applies_to": "both",
            "entities": ["email", "phone", "credit_card", "iban"],
            "action": "block",
            "region": "US",
        },
        {"type": "max_length", "name": "short", "applies_to": "both", "max_chars": 5},
    ]


# --- max_length ------------------------------------------------------------------------------


def test_max_length_counts_all_input_texts_and_the_output() -> None:
    g = compile_guardrails([{"type": "max_length", "max_chars": 10, "name": "short"}])
    assert g.check_input(["12345", "67890"]) == ["12345", "67890"]
    err = blocked(g, "x" * 11)
    assert (err.http_status, err.code, err.guardrail, err.guardrail_type) == (
        422,
        "guardrail_blocked",
        "short",
        "max_length",
    )
    assert err.direction == "input" and "11 characters" in err.message and "10" in err.message
    with pytest.raises(GuardrailBlocked):
        g.check_input(["123456", "78901"])
    assert blocked(g, "x" * 11, "output").direction == "output"


def test_applies_to_limits_the_direction() -> None:
    g = compile_guardrails([{"type": "max_length", "max_chars": 3, "applies_to": "output"}])
    assert g.check_input(["longer than three"]) == ["longer than three"]
    assert g.applies_to("output") and not g.applies_to("input")
    blocked(g, "long", "output")


# --- blocked_terms ---------------------------------------------------------------------------


@pytest.fixture
def terms() -> Guardrails:
    return compile_guardrails(
        [
            {
                "type": "blocked_terms",
                "terms": ["secret", "Project X", "c++", "Straße"],
                "name": "words",
            }
        ]
    )


@pytest.mark.parametrize(
    "text",
    [
        "top secret!",
        "SECRET",
        "Secret.",
        "about project   x today",
        "PROJECT\nX",
        "I like C++",
        "STRASSE",
    ],
)
def test_blocked_terms_block_whole_words_in_any_case(terms: Guardrails, text: str) -> None:
    err = blocked(terms, text)
    assert err.guardrail == "words" and err.guardrail_type == "blocked_terms"
    assert text not in err.message  # the text that fired is never quoted


@pytest.mark.parametrize(
    "text",
    [
        "secrets",
        "top_secret",
        "unsecret",
        "secretary",
        "project xylophone",
        "projects x",
        "c+",
        "Strasse1",
    ],
)
def test_blocked_terms_leave_words_that_only_contain_a_term(terms: Guardrails, text: str) -> None:
    assert terms.check_input([text]) == [text]
    assert terms.check_output(text) == text


# --- regex -----------------------------------------------------------------------------------


def test_regex_blocks_a_match_and_passes_the_rest() -> None:
    g = compile_guardrails(
        [{"type": "regex", "patterns": [r"(?i)api[_-]?key\s*[:=]", r"\bsk-[A-Za-z0-9]{20,}"]}]
    )
    assert blocked(g, "here: API_KEY = 123").guardrail == "regex"
    assert blocked(g, "token sk-" + "a" * 24, "output").direction == "output"
    assert g.check_input(["an api is fine", "sk-short"]) == ["an api is fine", "sk-short"]


def test_a_catastrophic_pattern_that_passes_the_probes_times_out_within_the_bound() -> None:
    metrics = EdgeMetrics()
    g = compile_guardrails([{"type": "regex", "patterns": ["(b+)+$"], "name": "slow"}])
    started = time.monotonic()
    with pytest.raises(GuardrailBlocked) as info:
        g.check_input(["b" * 5000 + "c", "b" * 5000 + "c"], metrics=metrics)
    elapsed = time.monotonic() - started
    # Unbounded, this match runs for ages; the margin only absorbs a loaded machine.
    assert elapsed < REGEX_TIMEOUT_S + 5
    assert (info.value.reason, info.value.guardrail) == ("timeout", "slow")
    assert "did not finish" in info.value.message
    assert sample(metrics, guardrail_type="regex", direction="input", action="timeout") == 1


# --- pii -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "entity", "marker"),
    [
        (f"write to {EMAIL}.", "email", "[REDACTED_EMAIL]"),
        (f"card {CARD} exp 12/29", "credit_card", "[REDACTED_CARD]"),
        ("card 5555-5555-5555-4444", "credit_card", "[REDACTED_CARD]"),
        (f"iban {IBAN}, thanks", "iban", "[REDACTED_IBAN]"),
        ("iban GB82WEST12345698765432", "iban", "[REDACTED_IBAN]"),
        (f"call {PHONE} today", "phone", "[REDACTED_PHONE]"),
        ("call +44 20 7946 0958 today", "phone", "[REDACTED_PHONE]"),
    ],
)
def test_pii_blocks_or_redacts_each_entity(text: str, entity: str, marker: str) -> None:
    out = redact(entities=[entity]).check_input([text])[0]
    assert marker in out
    assert out.count("[REDACTED_") == 1
    err = blocked(compile_guardrails([{"type": "pii", "entities": [entity]}]), text)
    assert err.guardrail_type == "pii"


@pytest.mark.parametrize(
    "text",
    [
        "order 1234 5678 9012 3456 shipped",  # 16 digits, Luhn fails
        "order #12345678901234 shipped",
        "ticket 0000 0000 0000 0000",  # passes Luhn, but one digit repeated
        "on 2024-01-15 at 10:30:45",
        "due 12/25/2024",
        "version 1.2.3 and 192.168.1.1",
        "costs $1,299.99 or 1299",
        "zip 94103-1234, ISBN 978-3-16-148410-0",
        "iban DE89 3704 0044 0532 0130 01",  # wrong check digits
        "mail user@localhost or @handle",
        "in the years 1999 and 2024",
    ],
)
def test_pii_leaves_what_is_not_personal_data(text: str) -> None:
    g = compile_guardrails([{"type": "pii"}])
    assert g.check_input([text]) == [text]
    assert g.check_output(text) == text


def test_pii_region_reads_national_numbers_of_that_country() -> None:
    text = "ruf 030 12345678 an"
    assert redact().check_input([text]) == [text]  # not a US number
    assert redact(region="de").check_input([text]) == ["ruf [REDACTED_PHONE] an"]


def test_redaction_of_several_entities_in_several_texts() -> None:
    out = redact().check_input([f"{EMAIL} / {CARD}", "nothing here", f"{IBAN} or {PHONE}"])
    assert out == [
        "[REDACTED_EMAIL] / [REDACTED_CARD]",
        "nothing here",
        "[REDACTED_IBAN] or [REDACTED_PHONE]",
    ]


def test_a_block_sees_the_text_before_any_redaction() -> None:
    g = compile_guardrails(
        [
            {"type": "pii", "action": "redact"},
            {"type": "blocked_terms", "terms": ["ceo@corp.example.com"]},
        ]
    )
    assert blocked(g, "mail ceo@corp.example.com").guardrail == "blocked_terms"


def test_the_first_blocking_guardrail_in_order_is_reported() -> None:
    g = compile_guardrails(
        [
            {"type": "blocked_terms", "terms": ["alpha"], "name": "first"},
            {"type": "blocked_terms", "terms": ["beta"], "name": "second"},
        ]
    )
    assert blocked(g, "beta then alpha").guardrail == "first"
    assert blocked(g, "beta only").guardrail == "second"


def test_luhn_and_iban_checks() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112") and not luhn_valid("0000000000000000")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and iban_valid("de89370400440532013000")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33") and not iban_valid("DE8937040044053201300")


# --- metrics ---------------------------------------------------------------------------------


def test_the_metric_counts_by_type_direction_and_action_not_by_name() -> None:
    metrics = EdgeMetrics()
    g = compile_guardrails(
        [
            {"type": "pii", "action": "redact", "name": "customer-data"},
            {"type": "blocked_terms", "terms": ["secret"], "name": "internal"},
        ]
    )
    g.check_input([f"a {EMAIL}", f"b {EMAIL}"], metrics=metrics)
    g.check_output("nothing", metrics=metrics)
    with pytest.raises(GuardrailBlocked):
        g.check_output("a secret", metrics=metrics)
    assert sample(metrics, guardrail_type="pii", direction="input", action="redact") == 1
    assert sample(metrics, guardrail_type="blocked_terms", direction="output", action="block") == 1
    text = metrics.render().decode()
    assert "customer-data" not in text and "internal" not in text


# --- streams ---------------------------------------------------------------------------------


def test_an_email_split_across_three_deltas_is_redacted() -> None:
    out = stream(redact(), ["Write to bob.sm", "ith@exam", "ple.com for info. Thanks"])
    assert "".join(out) == "Write to [REDACTED_EMAIL] for info. Thanks"
    assert out[0] == "Write to "  # what cannot be an address goes out at once
    assert "bob" not in "".join(out)


@pytest.mark.parametrize(
    "text",
    [
        f"Contact {EMAIL} or call +1 415-555-2671, card 5555-5555-5555-4444. "
        f"IBAN GB82 WEST 1234 5698 7654 32 end. Or {PHONE} and {IBAN}.",
        f"{CARD}",
        f"mail {EMAIL}. Then order 1234 5678 9012 3456, dated 2024-01-15.",
    ],
)
def test_a_stream_is_redacted_as_the_whole_text_for_any_chunking(text: str) -> None:
    g = redact()
    want = g.check_output(text)
    rng = random.Random(7)
    chunkings = [[text[i : i + n] for i in range(0, len(text), n)] for n in range(1, 30)]
    for _ in range(100):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 30))))
        chunkings.append([text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)])
    for chunks in chunkings:
        assert "".join(stream(g, chunks)) == want, chunks


def test_a_stream_holds_back_only_a_bounded_tail() -> None:
    g = compile_guardrails(
        [{"type": "pii", "action": "redact"}, {"type": "blocked_terms", "terms": ["a b c d"]}]
    )
    redactor = g.output_stream()
    sent = 0
    for i in range(2000):  # digits and spaces: every tail could be a number, words: an address
        sent += len(redactor.feed(f"{i} " if i % 3 else "word."))
        assert redactor.held <= HOLD_MAX_CHARS + 40
    sent += len(redactor.finish())
    assert redactor.held == 0
    assert sent > 0
    ordinary = compile_guardrails([{"type": "pii", "action": "redact"}]).output_stream()
    assert ordinary.feed("The quick brown fox ") == "The quick brown fox "


def test_a_blocked_term_across_deltas_stops_the_stream_before_it_is_sent() -> None:
    metrics = EdgeMetrics()
    g = compile_guardrails(
        [{"type": "blocked_terms", "terms": ["secret plan"], "applies_to": "output"}]
    )
    redactor = g.output_stream(metrics=metrics)
    sent = redactor.feed("our sec")
    sent += redactor.feed("ret")
    with pytest.raises(GuardrailBlocked) as info:
        sent += redactor.feed(" plan is")
    assert info.value.direction == "output"
    assert "secret" not in sent and sent == "our "
    assert sample(metrics, guardrail_type="blocked_terms", direction="output", action="block") == 1
    assert "".join(stream(g, ["our secret", "s are", " safe"])) == "our secrets are safe"


def test_a_term_at_the_very_end_of_a_stream_blocks_on_finish() -> None:
    redactor = compile_guardrails([{"type": "blocked_terms", "terms": ["secret"]}]).output_stream()
    assert redactor.feed("the secret") == "the "
    with pytest.raises(GuardrailBlocked):
        redactor.finish()


def test_max_length_stops_a_stream_at_the_delta_that_crosses_it() -> None:
    redactor = compile_guardrails([{"type": "max_length", "max_chars": 10}]).output_stream()
    assert redactor.feed("12345") == "12345"
    with pytest.raises(GuardrailBlocked):
        redactor.feed("678901")


def test_pii_block_and_regex_on_a_stream() -> None:
    g = compile_guardrails([{"type": "pii", "entities": ["credit_card"]}])
    redactor = g.output_stream()
    assert redactor.feed("card 4111 1111 ") == "card "
    with pytest.raises(GuardrailBlocked):
        redactor.feed("1111 1111 thanks")
    r = compile_guardrails([{"type": "regex", "patterns": [r"sk-[a-z]{8}"]}]).output_stream()
    assert r.feed("key: sk-abc") == "key: "
    with pytest.raises(GuardrailBlocked):
        r.feed("defgh.")


def test_a_stream_without_output_guardrails_passes_through() -> None:
    g = compile_guardrails([{"type": "pii", "action": "redact", "applies_to": "input"}])
    assert stream(g, [f"to {EMAIL}", ""]) == [f"to {EMAIL}", "", ""]


def test_redactions_on_a_stream_count_once_per_stream() -> None:
    metrics = EdgeMetrics()
    stream(redact(), [f"{EMAIL} and ", f"{EMAIL} done"], metrics=metrics)
    assert sample(metrics, guardrail_type="pii", direction="output", action="redact") == 1
