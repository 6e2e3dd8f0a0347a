"""file_pull: list/get/delete an HTTP file API (Acoustic Exchange's event file pull kind).

    GET {list_url}?numFiles=N     -> names (a JSON array, or the array at `files`)
    GET {get_url with {name}}     -> the file's content
    DELETE {delete_url with {name}}

Each file lands as `{stream}/yyyy/MM/dd/HH/part-pull-{name}` (hour of the pull) and is
loaded like any landed part. Per listing: the part key of each name is remembered in the
state store (`courier.source_keys`); then per file: it lands (atomic write), the source
deletes it; then the listing's names are forgotten. A crash before a delete pulls the file
again on the next run and lands it under the remembered key; identical bytes are left alone
(a rewrite would give the object a new version), so the courier's exactly-once file state
keeps it from loading twice. A listing with an unsafe name (`/`, `\\`, `..`, control
characters) lands nothing. A stop (SIGTERM) is seen after each file has landed and been
deleted: the names not pulled yet stay remembered for the next run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from courier.errors import RunError
from courier.sources.base import SourceRuntime, Stopped, hour_prefix, pointer
from courier.state.base import StateStore

SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class PullResult:
    source: str
    stream: str
    files: int = 0
    bytes: int = 0
    parts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "stream": self.stream,
            "files": self.files,
            "bytes": self.bytes,
            "parts": self.parts,
        }


def check_name(source: str, name: Any) -> str:
    """The name as it appears in the part key; RunError for a name that could escape."""
    if not isinstance(name, str) or not name:
        raise RunError(f"source {source!r}: the file API listed {name!r}, which is not a name")
    bad = (
        "/" in name
        or "\\" in name
        or ".." in name
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
        or name.startswith(".")
    )
    if bad:
        raise RunError(
            f"source {source!r}: the file API listed the name {name!r}, which could point "
            "outside the stream's folder ('/', '\\\\', '..', a leading '.' or control "
            "characters); nothing of this listing was landed: ask the API's owner to fix it"
        )
    return SAFE.sub("_", name)[:200]


def pull(rt: SourceRuntime, now: Callable[[], datetime] | None = None) -> PullResult:
    """Pull until the listing is empty (or a stop); return what landed."""
    result = PullResult(rt.source.name, rt.source.stream)
    try:
        _pull(rt, result, now)
    except Stopped:
        pass
    return result


def _pull(rt: SourceRuntime, result: PullResult, now: Callable[[], datetime] | None) -> None:
    src = rt.source
    assert src.list_url and src.get_url and src.delete_url
    clock = now or (lambda: datetime.now(UTC))
    done: set[str] = set()
    while not rt.stopping:
        body = rt.json(rt.request("GET", src.list_url, {src.num_files_param: src.num_files}))
        try:
            names = pointer(body, src.files, f"source {src.name!r}: the file names")
        except KeyError as exc:
            raise RunError(f"{exc.args[0]} in the listing; check `files`") from None
        if not isinstance(names, list):
            raise RunError(
                f"source {src.name!r}: the listing is a {type(names).__name__}, not an array "
                "of names; check `files`"
            )
        if not names:
            return
        for n in names:  # all checked before any lands
            check_name(src.name, n)
        if all(n in done for n in names):
            raise RunError(
                f"source {src.name!r}: the file API lists {len(names)} file(s) it was asked to "
                "delete; stopping instead of pulling them again"
            )
        todo = [n for n in dict.fromkeys(names) if n not in done]
        keys = rt.state(partial(_remember, src.name, todo, hour_prefix(src.stream, clock())))
        try:
            for name in todo:
                if rt.stopping:
                    break
                quoted = quote(name, safe="")
                data = rt.request("GET", src.get_url.replace("{name}", quoted)).content
                rt.land(keys[name], data)
                rt.request("DELETE", src.delete_url.replace("{name}", quoted))
                done.add(name)
                result.files += 1
                result.bytes += len(data)
                result.parts.append(keys[name])
        finally:
            pulled = [n for n in todo if n in done]
            if pulled:
                rt.state(partial(_forget, src.name, pulled))


def _remember(source: str, names: list[str], prefix: str, s: StateStore) -> dict[str, str]:
    """The part key of each name: the one remembered from a run that stopped before the
    delete, else a new one under `prefix` (the hour of this pull), remembered before it lands."""
    keys: dict[str, str] = {n: k for n, k in s.seen_keys(source, names).items() if k}
    fresh: dict[str, str | None] = {
        n: f"{prefix}/part-pull-{SAFE.sub('_', n)[:200]}" for n in names if n not in keys
    }
    s.add_keys(source, fresh, datetime.now(UTC))
    return {**keys, **{n: str(k) for n, k in fresh.items()}}


def _forget(source: str, names: list[str], s: StateStore) -> None:
    s.drop_keys(source, names)
