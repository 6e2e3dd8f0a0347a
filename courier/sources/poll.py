"""http_poll: fetch pages of records from a REST API and land them in the source's stream.

One page at a time:

1. GET the page (cursor parameter from the state store, page parameter or next link);
2. drop records whose dedupe key already landed for this source (`courier.source_keys`);
3. remember the part key the page will land as (`courier.cursors.pending`), then write the
   part `{stream}/yyyy/MM/dd/HH/part-poll-{source}-{stamp}.ndjson` atomically;
4. in one transaction: the new cursor, the page's dedupe keys, pending cleared.

A crash after 3 and before 4 re-polls from the old cursor on the next run; the first page
that lands anything is that page again (earlier pages' records are skipped by their keys),
and it lands under the pending key, overwriting the same object: nothing twice, nothing lost.
A stop (SIGTERM) is seen between pages: the round ends once the page being landed is
recorded (4), or at once during a back-off.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import orjson

from courier.errors import RunError
from courier.sources.base import SourceRuntime, Stopped, hour_prefix, pointer
from courier.state.base import StateStore

log = logging.getLogger("courier.sources")


@dataclass
class PollResult:
    source: str
    stream: str
    pages: int = 0
    records: int = 0  # records the API returned
    landed: int = 0  # records landed (the rest were duplicates)
    parts: list[str] = field(default_factory=list)
    cursor: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "stream": self.stream,
            "pages": self.pages,
            "records": self.records,
            "landed": self.landed,
            "duplicates": self.records - self.landed,
            "parts": self.parts,
            "cursor": self.cursor,
        }


def poll(rt: SourceRuntime, now: Callable[[], datetime] | None = None) -> PollResult:
    """Poll until the API has no more pages (or a stop); return what landed."""
    result = PollResult(rt.source.name, rt.source.stream)
    try:
        _poll(rt, result, now)
    except Stopped:
        log.info("%s: stopped after %d page(s)", rt.source.name, result.pages)
    return result


def _poll(rt: SourceRuntime, result: PollResult, now: Callable[[], datetime] | None) -> None:
    src = rt.source
    clock = now or (lambda: datetime.now(UTC))
    saved = rt.state(lambda s: s.source_state(src.name))
    cursor: str | None = saved["cursor"]
    if cursor is None and src.cursor is not None:
        cursor = src.cursor.initial
    pending: dict[str, Any] | None = saved["pending"]
    result.cursor = cursor
    url: str | None = src.url
    page = 1
    while url is not None and result.pages < src.max_pages and not rt.stopping:
        params: dict[str, Any] = {}
        if url == src.url:  # a next link carries its own parameters
            if src.cursor is not None and cursor is not None:
                params[src.cursor.param] = cursor
            if src.pagination is not None and src.pagination.page_param:
                params[src.pagination.page_param] = page
        request = str(httpx.URL(url, params=params or None))
        body = rt.json(rt.request("GET", url, params=params or None))
        records = _records(src.name, body, src.records)
        result.pages += 1
        result.records += len(records)
        keys = _keys(src.name, records, src.dedupe_key)
        if keys is not None:
            seen = rt.state(partial(_seen, src.name, keys))
            fresh, fresh_keys, inpage = [], [], set()
            for rec, key in zip(records, keys, strict=True):
                if key in seen or key in inpage:
                    continue
                inpage.add(key)
                fresh.append(rec)
                fresh_keys.append(key)
        else:
            fresh, fresh_keys = records, []
        new_cursor = _next_cursor(rt, body, records, cursor)
        part: str | None = None
        if fresh:
            if pending:
                # a page was being landed when a run stopped; its keys and cursor were not
                # saved, so it is the first page to land anything now: same part, overwritten
                part = str(pending["key"])
            else:
                at = clock()
                stamp = f"{at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
                part = f"{hour_prefix(src.stream, at)}/part-poll-{src.name}-{stamp}.ndjson"
                intent = {"request": request, "key": part}
                rt.state(partial(_intent, src.name, cursor, intent))
            data = b"".join(orjson.dumps(r) + b"\n" for r in fresh)
            rt.land(part, data)
            result.parts.append(part)
            result.landed += len(fresh)

        rt.state(partial(_save, src.name, new_cursor, {k: part for k in fresh_keys}, clock()))
        pending = None
        progressed = new_cursor != cursor
        cursor = result.cursor = new_cursor
        url = _next_url(src, body, url, records, progressed)
        if url is not None and src.pagination is not None and src.pagination.page_param:
            page += 1


def _seen(name: str, keys: list[str], s: StateStore) -> dict[str, str | None]:
    return s.seen_keys(name, keys)


def _intent(name: str, cursor: str | None, intent: dict[str, str], s: StateStore) -> None:
    s.put_source_state(name, cursor, intent)


def _save(
    name: str, cursor: str | None, keys: dict[str, str | None], at: datetime, s: StateStore
) -> None:
    s.add_keys(name, keys, at)
    s.put_source_state(name, cursor, None)


def _records(name: str, body: Any, where: str) -> list[Any]:
    try:
        records = pointer(body, where, f"source {name!r}: the records")
    except KeyError as exc:
        raise RunError(
            f"{exc.args[0]} in the response; check `records`; nothing was landed"
        ) from None
    if not isinstance(records, list):
        raise RunError(
            f"source {name!r}: the records at {where or 'the body'!r} are a "
            f"{type(records).__name__}, not an array; check `records`"
        )
    return records


def _keys(name: str, records: list[Any], dedupe: str | None) -> list[str] | None:
    if not dedupe:
        return None
    out = []
    for i, rec in enumerate(records):
        try:
            value = pointer(rec, dedupe, f"source {name!r}: record {i} has no dedupe key")
        except KeyError as exc:
            raise RunError(f"{exc.args[0]}; nothing of this page was landed") from None
        out.append(value if isinstance(value, str) else orjson.dumps(value).decode())
    return out


def _next_cursor(rt: SourceRuntime, body: Any, records: list[Any], cursor: str | None) -> Any:
    spec = rt.source.cursor
    if spec is None:
        return cursor
    try:
        if spec.field is not None:
            if not records:
                return cursor
            value = pointer(records[-1], spec.field, "the last record's cursor field")
        else:
            assert spec.response is not None
            value = pointer(body, spec.response, "the response's cursor")
    except KeyError as exc:
        raise RunError(f"source {rt.source.name!r}: {exc.args[0]}; check `cursor`") from None
    if value is None:
        return cursor
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _next_url(src: Any, body: Any, url: str, records: list[Any], progressed: bool) -> str | None:
    pag = src.pagination
    if pag is not None and pag.next_link:
        try:
            link = pointer(body, pag.next_link, "next link")
        except KeyError:
            return None
        return str(httpx.URL(url).join(link)) if link else None
    if not records:
        return None
    if pag is not None and pag.page_param:
        return src.url  # type: ignore[no-any-return]
    # cursor only: ask again while the cursor moves
    return src.url if progressed else None  # type: ignore[no-any-return]
