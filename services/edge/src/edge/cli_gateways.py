"""``switchyard gateways``: seed 002's gateways of a project (mounted by ``cli``).

    switchyard gateways create PROJECT NAME --model MODEL [settings...]
    switchyard gateways update PROJECT GATEWAY_ID [settings...]
    switchyard gateways list | show | delete ...

Each option is the admin API's field (``--collection-id`` -> ``collection_id``);
``--params`` and ``--routing`` take JSON, ``--overridable`` repeats. ``update``
sends only what is given (``--routing none`` clears the routing). The admin API checks
the values and a bad one is its 400 naming the field, printed on stderr (exit 1).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from .cli_endpoints import _client, _json, _object, _out

__all__ = ["gateways"]

gateways = typer.Typer(no_args_is_help=True, help="Seed 002 gateways of a project.")

_Opt = Annotated[str | None, typer.Option()]
_Int = Annotated[int | None, typer.Option()]
_Float = Annotated[float | None, typer.Option()]
_Overridable = Annotated[
    list[str] | None, typer.Option("--overridable", help="A param a request may override; repeat.")
]


def _path(project_id: str, gateway_id: str | None = None) -> str:
    base = f"/admin/projects/{quote(project_id, safe='')}/gateways"
    return base if gateway_id is None else f"{base}/{quote(gateway_id, safe='')}"


def _body(**options: Any) -> dict[str, Any]:
    """The given options as admin API fields (JSON options parsed)."""
    body = {k: v for k, v in options.items() if v is not None}
    if "params" in body:
        body["params"] = _object(body["params"], "--params")
    if "routing" in body:
        body["routing"] = None if body["routing"] == "none" else _json(body["routing"], "--routing")
    return body


@gateways.command("create")
def gateway_create(
    ctx: typer.Context,
    project_id: str,
    name: str,
    model: Annotated[str, typer.Option(help="Catalog model (or the credential's model name).")],
    instructions: _Opt = None,
    credential_id: _Opt = None,
    params: _Opt = None,
    collection_id: _Opt = None,
    top_k: _Int = None,
    min_score: _Float = None,
    overridable: _Overridable = None,
    routing: _Opt = None,
    on_rag_failure: _Opt = None,
) -> None:
    """Create a gateway: call it with model = its id or NAME:<first 4 hex of the id>."""
    body = _body(
        name=name,
        model=model,
        instructions=instructions,
        credential_id=credential_id,
        params=params,
        collection_id=collection_id,
        top_k=top_k,
        min_score=min_score,
        overridable=overridable,
        routing=routing,
        on_rag_failure=on_rag_failure,
    )
    _out(_client(ctx).call("POST", _path(project_id), body))


@gateways.command("update")
def gateway_update(
    ctx: typer.Context,
    project_id: str,
    gateway_id: str,
    name: _Opt = None,
    model: _Opt = None,
    instructions: _Opt = None,
    credential_id: _Opt = None,
    params: _Opt = None,
    collection_id: _Opt = None,
    top_k: _Int = None,
    min_score: _Float = None,
    overridable: _Overridable = None,
    routing: _Opt = None,
    on_rag_failure: _Opt = None,
) -> None:
    """Change a gateway; options left out keep their value."""
    body = _body(
        name=name,
        model=model,
        instructions=instructions,
        credential_id=credential_id,
        params=params,
        collection_id=collection_id,
        top_k=top_k,
        min_score=min_score,
        overridable=overridable,
        routing=routing,
        on_rag_failure=on_rag_failure,
    )
    _out(_client(ctx).call("PATCH", _path(project_id, gateway_id), body))


@gateways.command("list")
def gateway_list(ctx: typer.Context, project_id: str) -> None:
    """List a project's gateways."""
    _out(_client(ctx).call("GET", _path(project_id)))


@gateways.command("show")
def gateway_show(ctx: typer.Context, project_id: str, gateway_id: str) -> None:
    """Show one gateway."""
    _out(_client(ctx).call("GET", _path(project_id, gateway_id)))


@gateways.command("delete")
def gateway_delete(ctx: typer.Context, project_id: str, gateway_id: str) -> None:
    """Delete a gateway: calls naming it answer 404 at once."""
    _out(_client(ctx).call("DELETE", _path(project_id, gateway_id)))
