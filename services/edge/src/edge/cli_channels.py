"""``switchyard channels``: a site's chat channel (issue 16; mounted by ``cli``).

    switchyard channels create NAME [settings...]    POST /admin/projects (type channel)
    switchyard channels show PROJECT                  GET /admin/projects/{id}
    switchyard channels update PROJECT [settings...]  PATCH /admin/projects/{id} settings
    switchyard channels key PROJECT [--rotate]        GET (or POST) .../channel-key

Settings, the same in ``create`` and ``update`` (``docs/channels.md``): ``--model``,
``--system-prompt``, ``--enabled/--disabled``, ``--rate-limit-per-minute N``,
``--rate-limit-per-day N``, ``--history-ttl-seconds N`` and ``--allowed-origin URL``
(repeat for a list). ``update`` reads the project's settings first and changes only
what is given (a channel's settings share the project's ``settings`` object with
other keys, which a PATCH replaces whole); ``--allowed-origin`` replaces the whole
list, ``--no-allowed-origins`` empties it, and any ``--rate-limit-*`` option replaces
``rate_limits`` (give both to keep both). The admin API checks the values and
answers a bad one with a 400 naming the field, printed on stderr (exit 1).
``key`` prints the key: it is a secret, keep it on the site's backend.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol
from urllib.parse import quote

import orjson
import typer

__all__ = ["channels"]

channels = typer.Typer(no_args_is_help=True, help="Chat channels (a site's chat) of projects.")


class _Client(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def _client(ctx: typer.Context) -> _Client:
    client: _Client = ctx.obj
    return client


def _out(payload: Any) -> None:
    if payload is not None:
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


def _path(project_id: str, tail: str = "") -> str:
    return f"/admin/projects/{quote(project_id, safe='')}{tail}"


_Model = Annotated[str | None, typer.Option(help="Catalog model every conversation uses.")]
_SystemPrompt = Annotated[str | None, typer.Option(help="Sent first in every conversation.")]
_Enabled = Annotated[
    bool | None, typer.Option("--enabled/--disabled", help="A disabled channel answers 403.")
]
_PerMinute = Annotated[int | None, typer.Option(help="Requests per minute, all edges.")]
_PerDay = Annotated[int | None, typer.Option(help="Requests per day, all edges.")]
_Ttl = Annotated[
    int | None, typer.Option(help="A session continues this long after its last message.")
]
_Origins = Annotated[
    list[str] | None,
    typer.Option("--allowed-origin", help="An exact origin that gets CORS headers; repeat."),
]


def _settings(
    model: str | None,
    system_prompt: str | None,
    enabled: bool | None,
    per_minute: int | None,
    per_day: int | None,
    ttl: int | None,
    origins: list[str] | None,
) -> dict[str, Any]:
    """The channel settings the options give (only those given)."""
    given: dict[str, Any] = {
        "model": model,
        "system_prompt": system_prompt,
        "enabled": enabled,
        "history_ttl_seconds": ttl,
        "allowed_origins": origins,
    }
    settings = {name: value for name, value in given.items() if value is not None}
    limits = {"per_minute": per_minute, "per_day": per_day}
    if any(value is not None for value in limits.values()):
        settings["rate_limits"] = {k: v for k, v in limits.items() if v is not None}
    return settings


@channels.command("create")
def channel_create(
    ctx: typer.Context,
    name: str,
    model: _Model = None,
    system_prompt: _SystemPrompt = None,
    enabled: _Enabled = None,
    rate_limit_per_minute: _PerMinute = None,
    rate_limit_per_day: _PerDay = None,
    history_ttl_seconds: _Ttl = None,
    allowed_origin: _Origins = None,
) -> None:
    """Create a channel project (then ``channels key PROJECT --rotate`` for its key)."""
    settings = _settings(
        model,
        system_prompt,
        enabled,
        rate_limit_per_minute,
        rate_limit_per_day,
        history_ttl_seconds,
        allowed_origin,
    )
    body = {"name": name, "type": "channel", "settings": settings}
    _out(_client(ctx).call("POST", "/admin/projects", body))


@channels.command("show")
def channel_show(ctx: typer.Context, project_id: str) -> None:
    """Show a channel project and its settings."""
    _out(_client(ctx).call("GET", _path(project_id)))


@channels.command("update")
def channel_update(
    ctx: typer.Context,
    project_id: str,
    model: _Model = None,
    system_prompt: _SystemPrompt = None,
    enabled: _Enabled = None,
    rate_limit_per_minute: _PerMinute = None,
    rate_limit_per_day: _PerDay = None,
    history_ttl_seconds: _Ttl = None,
    allowed_origin: _Origins = None,
    no_allowed_origins: Annotated[
        bool, typer.Option("--no-allowed-origins", help="No origin gets CORS headers.")
    ] = False,
) -> None:
    """Change only the given settings of a channel (the others are kept)."""
    client = _client(ctx)
    changes = _settings(
        model,
        system_prompt,
        enabled,
        rate_limit_per_minute,
        rate_limit_per_day,
        history_ttl_seconds,
        [] if no_allowed_origins else allowed_origin,
    )
    if not changes:
        raise typer.BadParameter("nothing to update: give at least one setting")
    current = client.call("GET", _path(project_id))
    settings = dict(current.get("settings") or {}) if isinstance(current, dict) else {}
    _out(client.call("PATCH", _path(project_id), {"settings": settings | changes}))


@channels.command("key")
def channel_key(
    ctx: typer.Context,
    project_id: str,
    rotate: Annotated[
        bool,
        typer.Option(help="Create the key, or replace it: the old one is refused at once."),
    ] = False,
) -> None:
    """Print the channel's key (a secret: keep it on the site's backend)."""
    _out(_client(ctx).call("POST" if rotate else "GET", _path(project_id, "/channel-key")))
