"""``switchyard endpoints``: seed 001's Gateway API endpoints (mounted by ``cli``; also
``switchyard endpoint``).

    switchyard endpoints create PROJECT SLUG --model MODEL [settings...]
    switchyard endpoints update PROJECT SLUG [settings...]
    switchyard endpoints list | show | delete ...

Every setting of ``/admin/projects/{id}/endpoints`` has an option, named after the
admin API's field (``--prompt-template`` -> ``prompt_template``). The CLI checks only
what it must to build the body (JSON parses, a file exists, a number is a number); the
admin API checks the settings and answers a bad one with a 400 naming the field,
printed on stderr (exit 1).

Values, the same in ``create`` and ``update``:

    --input-schema / --output-schema   a file holding JSON, or the JSON itself
    --guardrail JSON                   one guardrail object; repeat for a list, in order
    --fallback MODEL                   one fallback model; repeat, in the order tried
    --rate-limit-per-minute N, --rate-limit-per-day N, --rate-limit-tokens-per-minute N
    --monthly-budget AMOUNT            a decimal, sent as a string (never a float)
    --session-ttl-seconds 3600 | 90m | 24h | 7d

``update`` changes only what is given. ``--guardrail`` and ``--fallback`` replace the
whole list, any ``--rate-limit-*`` option the whole ``rate_limits`` (give every limit
to keep). To clear: ``''`` for text (``--description``, ``--system-prompt``,
``--prompt-template``), ``none`` for ``--input-schema``, ``--output-schema``,
``--max-request-tokens`` and ``--monthly-budget``, and ``--no-guardrails``,
``--no-fallbacks``, ``--no-rate-limits``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import quote

import orjson
import typer

__all__ = ["endpoints"]

endpoints = typer.Typer(no_args_is_help=True, help="Gateway API endpoints of a project.")

_NONE = "none"
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class _Client(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def _client(ctx: typer.Context) -> _Client:
    client: _Client = ctx.obj
    return client


def _out(payload: Any) -> None:
    if payload is not None:
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


def _path(project_id: str, slug: str | None = None) -> str:
    base = f"/admin/projects/{quote(project_id, safe='')}/endpoints"
    return base if slug is None else f"{base}/{quote(slug, safe='')}"


def _json(text: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"{what} is not JSON: {exc}") from None


def _object(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = _json(text, what)
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{what} must be a JSON object")
    return value


def _schema(text: str, what: str) -> Any:
    """A JSON Schema from a file (when ``text`` names one) or from ``text`` itself."""
    path = Path(text)
    if not text.lstrip().startswith(("{", "[")) and path.is_file():
        try:
            text = path.read_text()
        except OSError as exc:
            raise typer.BadParameter(f"{what}: cannot read {path}: {exc}") from None
    return _json(text, what)


def _amount(text: str) -> str:
    """``text`` if it is a finite decimal numeral, kept as written (the API checks >= 0)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"not a decimal amount: {text!r}") from None
    if not value.is_finite():
        raise typer.BadParameter("must be a finite amount")
    return text


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"not an integer: {text!r}") from None


def _ttl(text: str) -> int:
    """Seconds in ``text``: a number with an optional unit s, m, h or d (``24h``)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise typer.BadParameter("use seconds or a number with a unit s, m, h or d, e.g. 24h")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _guardrails(items: list[str]) -> list[Any]:
    return [_json(item, f"--guardrail #{i + 1}") for i, item in enumerate(items)]


def _rate_limits(per_minute: int | None, per_day: int | None, tpm: int | None) -> dict[str, int]:
    given = {"per_minute": per_minute, "per_day": per_day, "tokens_per_minute": tpm}
    return {k: v for k, v in given.items() if v is not None}


# Options shared by create and update (update's clearing forms are in its own help).
_PromptTemplate = Annotated[
    str | None,
    typer.Option(
        metavar="TEXT", help="User message built from the call's variables: {{name}} placeholders."
    ),
]
_InputSchema = Annotated[
    str | None,
    typer.Option(metavar="FILE|JSON", help="JSON Schema the call's variables must satisfy (422)."),
]
_OutputSchema = Annotated[
    str | None,
    typer.Option(
        metavar="FILE|JSON", help="JSON Schema the model's JSON content must satisfy (502)."
    ),
]
_Guardrail = Annotated[
    list[str] | None,
    typer.Option(
        "--guardrail",
        metavar="JSON",
        help='A guardrail, JSON, e.g. {"type": "pii", "action": "redact"}; repeatable '
        "(max_length, blocked_terms, regex, pii).",
    ),
]
_MaxRequestTokens = Annotated[
    str | None,
    typer.Option(
        metavar="N", help="Per-request cap: estimated prompt tokens plus max output (422)."
    ),
]
_MonthlyBudget = Annotated[
    str | None,
    typer.Option(
        metavar="AMOUNT", help="Monthly spend limit in the price book's currency, e.g. 25.00."
    ),
]
_PerMinute = Annotated[
    int | None, typer.Option(metavar="N", help="Requests per clock minute (429 + Retry-After).")
]
_PerDay = Annotated[
    int | None, typer.Option(metavar="N", help="Requests per UTC day (429 + Retry-After).")
]
_TokensPerMinute = Annotated[
    int | None, typer.Option(metavar="N", help="Tokens per clock minute, settled from usage.")
]
_Fallback = Annotated[
    list[str] | None,
    typer.Option(
        "--fallback",
        metavar="MODEL",
        help="Another catalog model tried when the model fails after failover; repeatable, "
        "in order.",
    ),
]
_SessionTtl = Annotated[
    str | None,
    typer.Option(
        metavar="DURATION", help="Session lifetime after its last turn: seconds, 90m, 24h, 7d."
    ),
]


@endpoints.command("create")
def endpoint_create(
    ctx: typer.Context,
    project_id: str,
    slug: str,
    model: Annotated[str, typer.Option(help="Catalog model name or alias.")],
    description: Annotated[str | None, typer.Option(help="Free text shown in listings.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="Sent as the system message.")] = None,
    params: Annotated[
        str | None, typer.Option(help='Generation parameters, JSON, e.g. {"temperature": 0.2}.')
    ] = None,
    streaming: Annotated[
        bool, typer.Option("--streaming/--no-streaming", help='Honour "stream": true.')
    ] = False,
    active: Annotated[
        bool, typer.Option("--active/--inactive", help="An inactive endpoint answers 404.")
    ] = True,
    prompt_template: _PromptTemplate = None,
    input_schema: _InputSchema = None,
    output_schema: _OutputSchema = None,
    guardrail: _Guardrail = None,
    max_request_tokens: _MaxRequestTokens = None,
    monthly_budget: _MonthlyBudget = None,
    rate_limit_per_minute: _PerMinute = None,
    rate_limit_per_day: _PerDay = None,
    rate_limit_tokens_per_minute: _TokensPerMinute = None,
    fallback: _Fallback = None,
    sessions: Annotated[
        bool,
        typer.Option("--sessions/--no-sessions", help="Keep conversation history by session_id."),
    ] = False,
    session_ttl_seconds: _SessionTtl = None,
) -> None:
    """Create an endpoint: POST /api/PROJECT_ID/SLUG answers at once."""
    body: dict[str, Any] = {
        "slug": slug,
        "model": model,
        "description": description,
        "system_prompt": system_prompt,
        "params": _object(params, "--params") or {},
        "streaming_enabled": streaming,
        "active": active,
        "prompt_template": prompt_template,
        "guardrails": _guardrails(guardrail or []),
        "fallbacks": list(fallback or []),
        "sessions_enabled": sessions,
    }
    if input_schema is not None:
        body["input_schema"] = _schema(input_schema, "--input-schema")
    if output_schema is not None:
        body["output_schema"] = _schema(output_schema, "--output-schema")
    if max_request_tokens is not None:
        body["max_request_tokens"] = _count(max_request_tokens)
    if monthly_budget is not None:
        body["monthly_budget"] = _amount(monthly_budget)
    limits = _rate_limits(rate_limit_per_minute, rate_limit_per_day, rate_limit_tokens_per_minute)
    if limits:
        body["rate_limits"] = limits
    if session_ttl_seconds is not None:
        body["session_ttl_seconds"] = _ttl(session_ttl_seconds)
    _out(_client(ctx).call("POST", _path(project_id), body))


@endpoints.command("list")
def endpoint_list(ctx: typer.Context, project_id: str) -> None:
    """List a project's endpoints."""
    _out(_client(ctx).call("GET", _path(project_id)))


@endpoints.command("show")
def endpoint_show(ctx: typer.Context, project_id: str, slug: str) -> None:
    """Show one endpoint."""
    _out(_client(ctx).call("GET", _path(project_id, slug)))


@endpoints.command("update")
def endpoint_update(
    ctx: typer.Context,
    project_id: str,
    slug: str,
    new_slug: Annotated[str | None, typer.Option("--slug", help="Rename the endpoint.")] = None,
    model: Annotated[str | None, typer.Option(help="Catalog model name or alias.")] = None,
    description: Annotated[str | None, typer.Option(help="'' clears it.")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="'' clears it.")] = None,
    params: Annotated[str | None, typer.Option(help="Replaces the parameters, JSON.")] = None,
    streaming: Annotated[
        bool | None, typer.Option("--streaming/--no-streaming", help='Honour "stream": true.')
    ] = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="An inactive endpoint answers 404."),
    ] = None,
    prompt_template: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="{{name}} template of the user message; '' clears it."),
    ] = None,
    input_schema: Annotated[
        str | None,
        typer.Option(metavar="FILE|JSON", help="JSON Schema of the variables; none clears it."),
    ] = None,
    output_schema: Annotated[
        str | None,
        typer.Option(metavar="FILE|JSON", help="JSON Schema of the content; none clears it."),
    ] = None,
    guardrail: _Guardrail = None,
    no_guardrails: Annotated[
        bool, typer.Option("--no-guardrails", help="Remove every guardrail.")
    ] = False,
    max_request_tokens: Annotated[
        str | None, typer.Option(metavar="N", help="Per-request token cap; none clears it.")
    ] = None,
    monthly_budget: Annotated[
        str | None,
        typer.Option(metavar="AMOUNT", help="Monthly spend limit, e.g. 25.00; none clears it."),
    ] = None,
    rate_limit_per_minute: _PerMinute = None,
    rate_limit_per_day: _PerDay = None,
    rate_limit_tokens_per_minute: _TokensPerMinute = None,
    no_rate_limits: Annotated[
        bool, typer.Option("--no-rate-limits", help="Remove the rate limits.")
    ] = False,
    fallback: _Fallback = None,
    no_fallbacks: Annotated[
        bool, typer.Option("--no-fallbacks", help="Remove every fallback.")
    ] = False,
    sessions: Annotated[
        bool | None,
        typer.Option("--sessions/--no-sessions", help="Keep conversation history by session_id."),
    ] = None,
    session_ttl_seconds: _SessionTtl = None,
) -> None:
    """Change an endpoint; options left out keep their value (lists are replaced whole)."""
    body: dict[str, Any] = {
        k: v
        for k, v in {
            "slug": new_slug,
            "model": model,
            "params": _object(params, "--params"),
            "streaming_enabled": streaming,
            "active": active,
            "sessions_enabled": sessions,
        }.items()
        if v is not None
    }
    for name, text in (
        ("description", description),
        ("system_prompt", system_prompt),
        ("prompt_template", prompt_template),
    ):
        if text is not None:
            body[name] = text or None
    for name, text, flag in (
        ("input_schema", input_schema, "--input-schema"),
        ("output_schema", output_schema, "--output-schema"),
    ):
        if text is not None:
            body[name] = None if text.strip().lower() == _NONE else _schema(text, flag)
    if max_request_tokens is not None:
        cleared = max_request_tokens.strip().lower() == _NONE
        body["max_request_tokens"] = None if cleared else _count(max_request_tokens)
    if monthly_budget is not None:
        cleared = monthly_budget.strip().lower() == _NONE
        body["monthly_budget"] = None if cleared else _amount(monthly_budget)
    _replace(body, "guardrails", _guardrails(guardrail) if guardrail else None, no_guardrails, [])
    _replace(body, "fallbacks", list(fallback) if fallback else None, no_fallbacks, [])
    limits = _rate_limits(rate_limit_per_minute, rate_limit_per_day, rate_limit_tokens_per_minute)
    _replace(body, "rate_limits", limits or None, no_rate_limits, None)
    if session_ttl_seconds is not None:
        body["session_ttl_seconds"] = _ttl(session_ttl_seconds)
    _out(_client(ctx).call("PATCH", _path(project_id, slug), body))


def _replace(body: dict[str, Any], name: str, value: Any, clear: bool, empty: Any) -> None:
    """Set ``body[name]`` to ``value`` if given, to ``empty`` if ``clear``; not both."""
    if value is not None and clear:
        raise typer.BadParameter(f"give either the new {name} or --no-{name.replace('_', '-')}")
    if value is not None:
        body[name] = value
    elif clear:
        body[name] = empty


@endpoints.command("delete")
def endpoint_delete(ctx: typer.Context, project_id: str, slug: str) -> None:
    """Delete an endpoint."""
    _client(ctx).call("DELETE", _path(project_id, slug))
