"""``switchyard budgets | credits | usage``: the billing half of the CLI (mounted by ``cli``).

    switchyard budgets set PROJECT --limit 25.00 [--key KEY_ID] [--period monthly|YYYY-MM]
    switchyard budgets show PROJECT [--key KEY_ID] [--period YYYY-MM]
    switchyard credits topup PROJECT --amount 50.00 [--id TOPUP_ID] [--note TEXT]
    switchyard credits show PROJECT
    switchyard usage report PROJECT --by key|model|day|endpoint [--from DAY] [--to DAY]
    switchyard usage request PROJECT REQUEST_ID

Amounts are decimal strings, sent as such (never through a float). ``--limit
none`` removes a budget. A top-up without ``--id`` gets a fresh one, printed
in the answer; run it again with the same ``--id`` to retry safely. The
client (``cli.AdminClient``) arrives as the Typer context object.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Protocol
from urllib.parse import quote, urlencode

import orjson
import typer

__all__ = ["budgets", "credits", "usage"]


class _Client(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def _client(ctx: typer.Context) -> _Client:
    client: _Client = ctx.obj
    return client


def _out(payload: Any) -> None:
    typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


def _amount(text: str) -> str:
    """``text`` if it is a finite, non-negative decimal numeral (kept as written)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"not a decimal amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise typer.BadParameter("must be a finite amount >= 0")
    return text


def _path(project_id: str, key_id: str | None, tail: str) -> str:
    base = f"/admin/projects/{quote(project_id, safe='')}"
    if key_id:
        base += f"/keys/{quote(key_id, safe='')}"
    return f"{base}/{tail}"


def _query(params: dict[str, str | None]) -> str:
    present = {k: v for k, v in params.items() if v is not None}
    return f"?{urlencode(present)}" if present else ""


budgets = typer.Typer(no_args_is_help=True, help="Monthly budgets of a project or key.")
credits = typer.Typer(no_args_is_help=True, help="Prepaid credits of a project.")
usage = typer.Typer(no_args_is_help=True, help="Usage and cost reports.")

KeyOption = Annotated[str | None, typer.Option("--key", help="A key id of the project.")]


@budgets.command("set")
def budget_set(
    ctx: typer.Context,
    project_id: str,
    limit: Annotated[str, typer.Option(help="Decimal amount, e.g. 25.00; 'none' removes it.")],
    key: KeyOption = None,
    period: Annotated[str, typer.Option(help="'monthly' or one month YYYY-MM.")] = "monthly",
) -> None:
    """Set (or remove) the monthly budget of a project, or of one of its keys."""
    body = {"limit": None if limit.lower() == "none" else _amount(limit), "period": period}
    _out(_client(ctx).call("PUT", _path(project_id, key, "budget"), body))


@budgets.command("show")
def budget_show(
    ctx: typer.Context,
    project_id: str,
    key: KeyOption = None,
    period: Annotated[str | None, typer.Option(help="YYYY-MM; default: this month.")] = None,
) -> None:
    """Show a budget and the spend against it."""
    path = _path(project_id, key, "budget") + _query({"period": period})
    _out(_client(ctx).call("GET", path))


@credits.command("topup")
def credits_topup(
    ctx: typer.Context,
    project_id: str,
    amount: Annotated[str, typer.Option(help="Decimal amount, e.g. 50.00.")],
    topup_id: Annotated[
        str | None, typer.Option("--id", help="Idempotency id; reuse it to retry safely.")
    ] = None,
    note: Annotated[str, typer.Option(help="Free text kept with the top-up.")] = "",
) -> None:
    """Add prepaid credits to a project."""
    body = {"topup_id": topup_id or str(uuid.uuid4()), "amount": _amount(amount), "note": note}
    answer = _client(ctx).call("POST", _path(project_id, None, "credits/topups"), body)
    _out({**answer, "topup_id": body["topup_id"]})


@credits.command("show")
def credits_show(ctx: typer.Context, project_id: str) -> None:
    """Show a project's credit balance."""
    _out(_client(ctx).call("GET", _path(project_id, None, "credits")))


@usage.command("report")
def usage_report(
    ctx: typer.Context,
    project_id: str,
    by: Annotated[str, typer.Option("--by", help="key, model, day or endpoint.")] = "model",
    start: Annotated[
        str | None, typer.Option("--from", help="YYYY-MM-DD or instant; default: 1st of month.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="YYYY-MM-DD (included) or instant; default: today.")
    ] = None,
) -> None:
    """Usage and cost grouped by key, model, day or endpoint."""
    path = _path(project_id, None, "usage") + _query({"group_by": by, "from": start, "to": end})
    _out(_client(ctx).call("GET", path))


@usage.command("request")
def usage_request(ctx: typer.Context, project_id: str, request_id: str) -> None:
    """One request's cost and line items."""
    path = _path(project_id, None, f"usage/requests/{quote(request_id, safe='')}")
    _out(_client(ctx).call("GET", path))
