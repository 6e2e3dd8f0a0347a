"""`courier validate` checks for streams (config/streams/*.toml) and the [ingest] settings.

Registered in courier.project.CHECKS. Each stream needs a usable [auth]: HS256 a `secret`,
RS256 a `public_key` (or a `private_key` to derive it from), given as `${ENV}` references
(secrets never live in the repo; a reference to a variable that is not set in this shell is
fine here — `courier serve` refuses to start without it). Keys whose variables are set are
loaded, so a short secret or a bad PEM shows up at validate time. Couriers that read a stream
must use the format it lands (json -> ndjson, xml -> cbor).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from courier.config.loader import ENV_REF, read_document
from courier.errors import ConfigError

if TYPE_CHECKING:
    from courier.project import Project

LANDED_FORMAT = {"json": "ndjson", "xml": "cbor"}
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def raw_value(path: Path | None, *keys: str) -> Any:
    """A value as written in the file, before ${ENV} resolution (None when absent)."""
    if path is None:
        return None
    try:
        value: Any = read_document(path)
    except ConfigError:
        return None
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and ENV_REF.search(value) is not None


def check_streams(project: Project) -> list[ConfigError]:
    errors: list[ConfigError] = []
    settings = project.settings
    settings_path = project.root / "config" / "courier.toml"
    ingest = settings.ingest
    if project.streams and ingest.storage not in settings.storages:
        errors.append(
            ConfigError(
                f"storage {ingest.storage!r} is not defined: add [storages.{ingest.storage}] "
                f"(defined: {', '.join(settings.storages)})",
                settings_path,
                "ingest.storage",
            )
        )
    if not HEADER_NAME.match(ingest.tenant_header):
        errors.append(
            ConfigError(
                f"{ingest.tenant_header!r} is not an HTTP header name",
                settings_path,
                "ingest.tenant_header",
            )
        )
    admin = raw_value(settings_path, "ingest", "admin_token")
    if admin is not None and not _is_reference(admin):
        errors.append(
            ConfigError(
                "admin_token is written in the file: secrets stay out of the repo; use "
                'admin_token = "${COURIER_ADMIN_TOKEN}"',
                settings_path,
                "ingest.admin_token",
            )
        )
    for sid, stream in project.streams.items():
        path = project.files.get(f"config/streams:{sid}")
        for extra in sorted(stream.model_extra or {}):
            errors.append(
                ConfigError(
                    "unknown key: remove it or check its spelling (stream keys: payload, "
                    "tenant, batch_arrays, rate_limit, roll_bytes, storage, [auth])",
                    path,
                    extra,
                )
            )
        if stream.storage and stream.storage not in settings.storages:
            errors.append(
                ConfigError(
                    f"storage {stream.storage!r} is not defined in config/courier.toml "
                    f"(defined: {', '.join(settings.storages)})",
                    path,
                    "storage",
                )
            )
        errors.extend(_check_auth(project, sid, path))
    for name, courier in project.couriers.items():
        source = project.streams.get(courier.stream or "")
        if source is None:
            continue
        landed = LANDED_FORMAT[source.payload]
        if courier.format != landed:
            errors.append(
                ConfigError(
                    f"stream {source.id!r} takes {source.payload} payloads and lands them as "
                    f'{landed}: set format = "{landed}"',
                    project.files.get(f"config/couriers:{name}"),
                    "format",
                )
            )
    return errors


def _check_auth(project: Project, sid: str, path: Path | None) -> list[ConfigError]:
    stream = project.streams[sid]
    auth = stream.auth
    errors: list[ConfigError] = []
    if auth.algorithm == "HS256":
        raw = raw_value(path, "auth", "secret")
        if raw is None:
            return [
                ConfigError(
                    'HS256 needs a secret: add secret = "${COURIER_JWT_SECRET}" under [auth] '
                    '(or use algorithm = "RS256" with public_key)',
                    path,
                    "auth.secret",
                )
            ]
        if not _is_reference(raw):
            errors.append(
                ConfigError(
                    "the secret is written in the file: secrets stay out of the repo; use "
                    'secret = "${COURIER_JWT_SECRET}" and export the variable',
                    path,
                    "auth.secret",
                )
            )
    else:
        public = raw_value(path, "auth", "public_key")
        private = raw_value(path, "auth", "private_key")
        if public is None and private is None:
            return [
                ConfigError(
                    "RS256 needs a public key to verify tokens: add public_key = "
                    '"${COURIER_JWT_PUBLIC_KEY}" (PEM text or a PEM file path) under [auth]',
                    path,
                    "auth.public_key",
                )
            ]
        if isinstance(private, str) and "-----BEGIN" in private:
            errors.append(
                ConfigError(
                    "the private key is written in the file: keep it out of the repo; use "
                    'private_key = "${COURIER_JWT_PRIVATE_KEY}" (PEM text or a file path)',
                    path,
                    "auth.private_key",
                )
            )
    resolved = auth.secret if auth.algorithm == "HS256" else (auth.public_key or auth.private_key)
    if resolved and not errors:
        from courier.ingest.tokens import load_keys

        tenant = stream.tenant or project.settings.ingest.tenant
        try:
            load_keys(stream, tenant, project.root, path)
        except ConfigError as exc:
            errors.append(exc)
    return errors
