"""file_pull: list/get/delete an HTTP file API (Acoustic Exchange's event file pull kind).

    GET {list_url}?numFiles=N     -> names (a JSON array, or the array at `files`)
    GET {get_url with {name}}     -> the file's content
    DELETE {delete_url with {name}}

Each file lands as `{stream}/yyyy/MM/dd/HH/part-pull-{name}` (hour of the pull) and is
loaded like any landed part. Order per file: the part key is remembered in the state store
(`courier.source_keys`), the file lands (atomic write), the source deletes it, the key is
forgotten. A crash before the delete pulls the file again on the next run and lands it under
the remembered key, overwriting the same object; the courier's exactly-once file state then
keeps it from loading twice. A listing with an unsafe name (`/`, `\\`, `..`, control
characters) lands nothing.
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
from courier.sources.base import SourceRuntime, fault_after_land, hour_prefix, pointer
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
    """Pull until the listing is empty; return what landed."""
    src = rt.source
    assert src.list_url and src.get_url and src.delete_url
    clock = now or (lambda: datetime.now(UTC))
    result = PullResult(src.name, src.stream)
    done: set[str] = set()
    while True:
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
            return result
        safe = {n: check_name(src.name, n) for n in names}  # all checked before any lands
        if all(n in done for n in names):
            raise RunError(
                f"source {src.name!r}: the file API lists {len(names)} file(s) it was asked to "
                "delete; stopping instead of pulling them again"
            )
        for name in names:
            if name in done:
                continue
            remembered = rt.state(partial(_seen, src.name, name))
            key = remembered.get(name)
            if key is None:
                key = f"{hour_prefix(src.stream, clock())}/part-pull-{safe[name]}"
                rt.state(partial(_remember, src.name, name, key, clock()))
            quoted = quote(name, safe="")
            data = rt.request("GET", src.get_url.replace("{name}", quoted)).content
            rt.storage.write_bytes(key, data)
            fault_after_land(key)
            rt.request("DELETE", src.delete_url.replace("{name}", quoted))
            rt.state(partial(_forget, src.name, name))
            done.add(name)
            result.files += 1
            result.bytes += len(data)
            result.parts.append(key)


def _seen(source: str, name: str, s: StateStore) -> dict[str, str | None]:
    return s.seen_keys(source, [name])


def _remember(source: str, name: str, key: str, at: datetime, s: StateStore) -> None:
    s.add_keys(source, {name: key}, at)


def _forget(source: str, name: str, s: StateStore) -> None:
    s.drop_keys(source, [name])
