"""``switchyard``: the command line over the admin API (installed with the edge package).

    switchyard [--url URL] [--token TOKEN] projects    create | list | show | update | delete
                                           keys        create | list | show | revoke | delete
                                           credentials add | list | delete | rewrap
                                           endpoints   create | list | show | update | delete
                                                       (also ``endpoint``; ``cli_endpoints``)
                                           channels    create | show | update | key (``cli_channels``)
                                           gateways    create | list | show | update | delete
                                                       (seed 002; ``cli_gateways``)
                                           budgets     set | show        (``cli_billing``)
                                           credits     topup | show
                                           usage       report | request

``--url`` / ``SWITCHYARD_URL`` is the edge's origin (default
http://127.0.0.1:8080); ``--token`` / ``SWITCHYARD_ADMIN_TOKEN`` is the
operator token or a project admin key. Answers are printed as JSON on
stdout; an error prints the API's message on stderr and exits 1. A provider
key for ``credentials add`` is prompted for (hidden) unless given with
``--api-key`` or ``SWITCHYARD_PROVIDER_API_KEY``, so it need not appear in
the shell history or the process list.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import httpx
import orjson
import typer

from .cli_billing import budgets, credits, usage
from .cli_channels import channels
from .cli_endpoints import endpoints
from .cli_gateways import gateways

__all__ = ["app", "main", "parse_duration"]

_TIMEOUT_S = 30.0
_DURATION = re.compile(r"(\d+)([smhdw]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a number with an optional unit s, m, h, d or w (``90d``)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise typer.BadParameter("use a number with an optional unit s, m, h, d or w, e.g. 90d")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


class AdminClient:
    """Admin API calls; an error answer becomes a message on stderr and exit status 1."""

    def __init__(
        self, url: str, token: str | None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=_TIMEOUT_S, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            typer.echo(f"error: cannot reach {self._http.base_url}: {exc}", err=True)
            raise typer.Exit(1) from None
        if resp.status_code == 204:
            return None
        try:
            payload = resp.json()
        except ValueError:
            payload = {"error": resp.text or resp.reason_phrase}
        if resp.is_error:
            message = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(message, dict):  # an OpenAI-shaped error (not an admin route)
                message = message.get("message")
            typer.echo(f"error ({resp.status_code}): {message or payload}", err=True)
            raise typer.Exit(1)
        return payload


def _out(payload: Any) -> None:
    if payload is not None:
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


def _client(ctx: typer.Context) -> AdminClient:
    client: AdminClient = ctx.obj
    return client


app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=(
        "Manage a Switchyard gateway: projects, keys, credentials, endpoints, budgets, credits, "
        "usage."
    ),
)
projects = typer.Typer(no_args_is_help=True, help="Projects (tenants).")
keys = typer.Typer(no_args_is_help=True, help="API keys of a project.")
credentials = typer.Typer(no_args_is_help=True, help="Managed provider credentials of a project.")
app.add_typer(projects, name="projects")
app.add_typer(keys, name="keys")
app.add_typer(credentials, name="credentials")
app.add_typer(endpoints, name="endpoints")
app.add_typer(endpoints, name="endpoint", hidden=True)
app.add_typer(gateways, name="gateways")
app.add_typer(budgets, name="budgets")
app.add_typer(channels, name="channels")
app.add_typer(credits, name="credits")
app.add_typer(usage, name="usage")


@app.callback()
def _connect(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="SWITCHYARD_URL", help="The edge's origin.")
    ] = "http://127.0.0.1:8080",
    token: Annotated[
        str | None,
        typer.Option(envvar="SWITCHYARD_ADMIN_TOKEN", help="Operator token or admin-scoped key."),
    ] = None,
) -> None:
    client = AdminClient(url, token)
    ctx.obj = client
    ctx.call_on_close(client.close)


# -- projects -----------------------------------------------------------------------------------


def _settings(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object")
    return value


_RATE_LIMITS_HELP = (
    'Rate limits, JSON: {"per_minute": 60, "per_day": 10000, "tokens_per_minute": 90000} '
    "(each optional); 'null' removes them."
)


def _rate_limits(text: str) -> dict[str, Any] | None:
    """``--rate-limits``: a JSON object, or ``null`` (no limits)."""
    return None if text.strip() == "null" else _settings(text)


@projects.command("create")
def project_create(
    ctx: typer.Context,
    name: str,
    type: Annotated[str, typer.Option("--type", help="ai_gateway or channel.")] = "ai_gateway",
    settings: Annotated[str | None, typer.Option(help="Settings, a JSON object.")] = None,
    rate_limits: Annotated[
        str | None, typer.Option(help="Shared by all the project's keys. " + _RATE_LIMITS_HELP)
    ] = None,
) -> None:
    """Create a project."""
    body: dict[str, Any] = {"name": name, "type": type, "settings": _settings(settings) or {}}
    if rate_limits is not None:
        body["rate_limits"] = _rate_limits(rate_limits)
    _out(_client(ctx).call("POST", "/admin/projects", body))


@projects.command("list")
def project_list(ctx: typer.Context) -> None:
    """List the projects the token may see."""
    _out(_client(ctx).call("GET", "/admin/projects"))


@projects.command("show")
def project_show(ctx: typer.Context, project_id: str) -> None:
    """Show one project."""
    _out(_client(ctx).call("GET", f"/admin/projects/{project_id}"))


@projects.command("update")
def project_update(
    ctx: typer.Context,
    project_id: str,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    settings: Annotated[str | None, typer.Option(help="New settings (replaced), JSON.")] = None,
    rate_limits: Annotated[
        str | None, typer.Option(help="Operator only. " + _RATE_LIMITS_HELP)
    ] = None,
) -> None:
    """Rename a project and/or replace its settings or rate limits."""
    body: dict[str, Any] = {
        k: v for k, v in {"name": name, "settings": _settings(settings)}.items() if v is not None
    }
    if rate_limits is not None:
        body["rate_limits"] = _rate_limits(rate_limits)
    _out(_client(ctx).call("PATCH", f"/admin/projects/{project_id}", body))


@projects.command("delete")
def project_delete(ctx: typer.Context, project_id: str) -> None:
    """Delete a project with its keys and credentials."""
    _client(ctx).call("DELETE", f"/admin/projects/{project_id}")


# -- keys ---------------------------------------------------------------------------------------


@keys.command("create")
def key_create(
    ctx: typer.Context,
    project_id: str,
    name: Annotated[str, typer.Option(help="Label shown in listings.")],
    scope: Annotated[
        list[str],
        typer.Option(
            help="chat, embeddings, responses, admin, collections:read or collections:write; repeatable."
        ),
    ],
    description: Annotated[str | None, typer.Option()] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Validity period, e.g. 3600, 12h, 90d.")
    ] = None,
    expires_at: Annotated[str | None, typer.Option(help="Expiry, ISO 8601 with zone.")] = None,
    rate_limits: Annotated[str | None, typer.Option(help=_RATE_LIMITS_HELP)] = None,
    allowed_model: Annotated[
        list[str] | None,
        typer.Option(help="A catalog model the key may call; repeatable (default: every model)."),
    ] = None,
) -> None:
    """Create a key; the full key is printed this once."""
    body: dict[str, Any] = {"name": name, "description": description, "scopes": scope}
    if expires_in is not None:
        body["expires_in"] = parse_duration(expires_in)
    if expires_at is not None:
        body["expires_at"] = expires_at
    if rate_limits is not None:
        body["rate_limits"] = _rate_limits(rate_limits)
    if allowed_model:
        body["allowed_models"] = allowed_model
    _out(_client(ctx).call("POST", f"/admin/projects/{project_id}/keys", body))


@keys.command("update")
def key_update(
    ctx: typer.Context,
    project_id: str,
    key_id: str,
    name: Annotated[str | None, typer.Option(help="New label.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    rate_limits: Annotated[str | None, typer.Option(help=_RATE_LIMITS_HELP)] = None,
    allowed_model: Annotated[
        list[str] | None,
        typer.Option(help="A catalog model the key may call; repeatable (replaces the list)."),
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Allow every model again.")
    ] = False,
) -> None:
    """Change a key's name, description, rate limits or allowed models."""
    body: dict[str, Any] = {
        k: v for k, v in {"name": name, "description": description}.items() if v is not None
    }
    if rate_limits is not None:
        body["rate_limits"] = _rate_limits(rate_limits)
    if allowed_model and all_models:
        raise typer.BadParameter("give --allowed-model or --all-models, not both")
    if allowed_model:
        body["allowed_models"] = allowed_model
    elif all_models:
        body["allowed_models"] = None
    _out(_client(ctx).call("PATCH", f"/admin/projects/{project_id}/keys/{key_id}", body))


@keys.command("list")
def key_list(ctx: typer.Context, project_id: str) -> None:
    """List a project's keys (never the keys themselves)."""
    _out(_client(ctx).call("GET", f"/admin/projects/{project_id}/keys"))


@keys.command("show")
def key_show(ctx: typer.Context, project_id: str, key_id: str) -> None:
    """Show one key."""
    _out(_client(ctx).call("GET", f"/admin/projects/{project_id}/keys/{key_id}"))


@keys.command("revoke")
def key_revoke(ctx: typer.Context, project_id: str, key_id: str) -> None:
    """Revoke a key (it stops working at once)."""
    _out(_client(ctx).call("POST", f"/admin/projects/{project_id}/keys/{key_id}/revoke"))


@keys.command("delete")
def key_delete(ctx: typer.Context, project_id: str, key_id: str) -> None:
    """Delete a key."""
    _client(ctx).call("DELETE", f"/admin/projects/{project_id}/keys/{key_id}")


# -- credentials --------------------------------------------------------------------------------


@credentials.command("add")
def credential_add(
    ctx: typer.Context,
    project_id: str,
    provider: Annotated[str, typer.Option(help="Catalog provider name, e.g. openai.")],
    api_key: Annotated[
        str,
        typer.Option(
            envvar="SWITCHYARD_PROVIDER_API_KEY", prompt=True, hide_input=True, help="Provider key."
        ),
    ],
    base_url: Annotated[str | None, typer.Option(help="Custom upstream base URL.")] = None,
) -> None:
    """Store (or replace) a project's managed key for a provider."""
    body = {"provider": provider, "api_key": api_key, "base_url": base_url}
    _out(_client(ctx).call("POST", f"/admin/projects/{project_id}/credentials", body))


@credentials.command("list")
def credential_list(ctx: typer.Context, project_id: str) -> None:
    """List a project's credentials (fingerprint and last 4 only)."""
    _out(_client(ctx).call("GET", f"/admin/projects/{project_id}/credentials"))


@credentials.command("delete")
def credential_delete(ctx: typer.Context, project_id: str, credential_id: str) -> None:
    """Delete a credential."""
    _client(ctx).call("DELETE", f"/admin/projects/{project_id}/credentials/{credential_id}")


@credentials.command("rewrap")
def credential_rewrap(ctx: typer.Context) -> None:
    """Re-seal every credential under the current GATEWAY_SECRET_KEY (operator only)."""
    _out(_client(ctx).call("POST", "/admin/credentials/rewrap"))


def main() -> None:
    """Console-script entry point (``switchyard``)."""
    app()
