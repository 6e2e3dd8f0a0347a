"""CLI plugin for API keys: `courier apikey create|list|revoke`."""

from __future__ import annotations

import click

from courier.cli.options import State, emit_json, error_handler, json_option, table
from courier.errors import ConfigError
from courier.validate import load_project


@click.group()
def apikey() -> None:
    """API keys for producers: header-key auth and token exchange (GET /api/token)."""


@apikey.command("create")
@click.argument("name")
@click.option("--stream", "streams", multiple=True, required=True, help="a stream it may send to")
@json_option
@click.pass_obj
@error_handler
def apikey_create(state: State, name: str, streams: tuple[str, ...], as_json: bool) -> None:
    """Create key NAME; prints its id and secret once (only a salted hash is kept)."""
    from courier.ingest.apikeys import KeyStore

    project = load_project(state.project_dir)
    unknown = [s for s in streams if s not in project.streams]
    if unknown:
        known = ", ".join(sorted(project.streams)) or "none"
        raise ConfigError(f"no stream named {', '.join(map(repr, unknown))} (known: {known})")
    key, secret = KeyStore.for_project(project).create(name, list(streams))
    if as_json:
        emit_json({"name": key.name, "id": key.id, "secret": secret, "streams": key.streams})
        return
    click.echo(f"key id: {key.id}")
    click.echo(f"secret: {secret}")
    click.echo(
        "The secret is shown this once; store it now. Send both with HTTP Basic auth to "
        "GET /api/token, or in the X-App-Id and X-App-Secret headers.",
        err=True,
    )


@apikey.command("list")
@json_option
@click.pass_obj
@error_handler
def apikey_list(state: State, as_json: bool) -> None:
    """Every API key: name, id, streams, created, revoked (never a secret)."""
    from courier.ingest.apikeys import KeyStore

    keys = KeyStore.for_project(load_project(state.project_dir)).keys()
    rows = [
        {
            "name": k.name,
            "id": k.id,
            "streams": ",".join(k.streams),
            "created_at": k.created_at,
            "revoked_at": k.revoked_at,
            "status": "active" if k.active else "revoked",
        }
        for k in keys
    ]
    if as_json:
        emit_json(rows)
    elif rows:
        click.echo(table(rows, ["name", "id", "streams", "status", "created_at", "revoked_at"]))
    else:
        click.echo("no API keys; create one with `courier apikey create NAME --stream ID`")


@apikey.command("revoke")
@click.argument("name")
@click.pass_obj
@error_handler
def apikey_revoke(state: State, name: str) -> None:
    """Revoke key NAME: running servers refuse it (and its tokens) from the next request."""
    from courier.ingest.apikeys import KeyStore

    key = KeyStore.for_project(load_project(state.project_dir)).revoke(name)
    click.echo(f"revoked {key.name} ({key.id}) at {key.revoked_at}")


@apikey.command("delete")
@click.argument("name")
@click.pass_obj
@error_handler
def apikey_delete(state: State, name: str) -> None:
    """Delete key NAME: refused like a revoked key from the next request, and the name is
    free for a new key."""
    from courier.ingest.apikeys import KeyStore

    key = KeyStore.for_project(load_project(state.project_dir)).delete(name)
    click.echo(f"deleted {key.name} ({key.id})")


def register(cli: click.Group) -> None:
    cli.add_command(apikey)


__all__ = ["register"]
