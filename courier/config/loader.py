"""Read config files once into typed models, collecting every problem with its file and key."""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from courier.errors import ConfigError

# ${VAR}, or ${VAR:-default} (the default when VAR is unset or empty, as in a shell)
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
M = TypeVar("M", bound=BaseModel)


def resolve_env(value: Any, missing: set[str], environ: dict[str, str] | None = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} in strings. A value that is only an unset ${VAR}
    (with no default) becomes None."""
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            r = resolve_env(v, missing, environ)
            if r is not None:
                out[k] = r
        return out
    if isinstance(value, list):
        return [resolve_env(v, missing, environ) for v in value]
    if isinstance(value, str) and "${" in value:
        whole = ENV_REF.fullmatch(value)
        if whole and whole.group(2) is None and whole.group(1) not in env:
            missing.add(whole.group(1))
            return None

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if default is not None:
                return env.get(name) or default
            if name not in env:
                missing.add(name)
                return ""
            return env[name]

        return ENV_REF.sub(sub, value)
    return value


def unset_env(
    value: Any, key: str = "", environ: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Key path -> the ${VAR} references (without a default) in it whose variable is not set
    (or empty), for a document as read: what `validate --for` and the front ends name."""
    env = os.environ if environ is None else environ
    out: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(unset_env(v, f"{key}.{k}" if key else str(k), env))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(unset_env(v, f"{key}[{i}]", env))
    elif isinstance(value, str) and "${" in value:
        names = [m.group(1) for m in ENV_REF.finditer(value) if m.group(2) is None]
        unset = [n for n in names if not env.get(n)]
        if unset:
            out[key] = unset
    return out


def read_document(path: Path) -> dict[str, Any]:
    """A TOML (or, for couriers, JSON) file as a dict; ConfigError naming the line on bad syntax."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", path) from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ConfigError("expected a JSON object at the top level", path)
            return data
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"invalid {path.suffix[1:].upper()} syntax: {exc}", path) from exc


def field_names(model: Any, seen: set[int] | None = None) -> list[str]:
    """Every key (and alias) of a model and the models inside it, for "did you mean"."""
    import typing

    seen = set() if seen is None else seen
    if id(model) in seen or not isinstance(model, type) or not issubclass(model, BaseModel):
        return []
    seen.add(id(model))
    names: list[str] = []
    for name, info in model.model_fields.items():
        names.append(info.alias or name)
        stack = [info.annotation]
        while stack:
            t = stack.pop()
            stack.extend(typing.get_args(t))
            names.extend(field_names(t, seen))
    return names


def validation_errors(
    exc: ValidationError, path: Path, missing_env: set[str], model: Any = None
) -> list[ConfigError]:

    known = sorted(set(field_names(model))) if model is not None else []
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int) or True]
        # drop pydantic's union-branch tags ("s3", "function-after[...]") from the key path
        key = ".".join(p for p in loc if not p.startswith("function-") and "[" not in p)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "this key is required"
        elif err["type"] == "extra_forbidden":
            name = loc[-1] if loc else ""
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            msg = (
                f"unknown key: did you mean {close[0]!r}?"
                if close
                else "unknown key: remove it or check its spelling"
            )
        if missing_env:
            msg += f" (environment variable(s) not set: {', '.join(sorted(missing_env))})"
        out.append(ConfigError(msg, path, key or None))
    return out


def load_model(model: type[M], path: Path, extra: dict[str, Any] | None = None) -> M:
    """Parse one file into a model; raise ConfigError (or a list of them via ExceptionGroup)."""
    data = read_document(path)
    missing: set[str] = set()
    data = resolve_env(data, missing)
    if extra:
        data = {**data, **extra}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc, path, missing, model)
        raise ConfigErrorGroup(errors) from None


class ConfigErrorGroup(Exception):
    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))
