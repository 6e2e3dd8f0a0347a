"""The status page's pages, each rendered from a snapshot (courier/ui/reader.py) and the
request's query parameters. Everything shown passes through html.esc."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from courier.ui.charts import chart
from courier.ui.html import badge, esc, link, local, number, seconds, size, table
from courier.ui.reader import Snapshot, StatusReader, iso

PAGE_SIZE = 50
RUN_STATUSES = ["succeeded", "failed", "skipped", "running", "interrupted"]
STATE_ORDER = {"failing": 0, "late": 1, "never_run": 2, "running": 3, "ok": 4}


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


# -- /api/status.json ---------------------------------------------------------------------------


def status_document(reader: StatusReader, snap: Snapshot | None) -> dict[str, Any]:
    """The overview in its pinned shape (README: "The status page")."""
    couriers = snap.couriers if snap else []
    counts = {s: 0 for s in STATE_ORDER}
    for row in couriers:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {
        "version": 1,
        "generated_at": iso(reader.now()),
        "time_zone": reader.project.settings.project.time_zone,
        "snapshot": reader.freshness().as_dict(),
        "counts": counts,
        "alerts": snap.alerts if snap else [],
        "couriers": couriers,
    }


# -- overview ---------------------------------------------------------------------------------


def overview(snap: Snapshot | None, tz: ZoneInfo) -> str:
    if snap is None:
        return "<h1>Overview</h1><p class=muted>No snapshot of the state yet.</p>"
    parts = []
    if snap.alerts:
        rows = [
            [
                esc(local(a["created_at"], tz)),
                esc(a["kind"]),
                link("/runs", a["courier"], courier=a["courier"]) if a["courier"] else "",
                esc(a["group"]),
                esc(a["message"]),
                link(f"/runs/{a['run_id']}", "run") if a["run_id"] else "",
            ]
            for a in snap.alerts[:20]
        ]
        parts.append(
            f'<section class="alerts"><h2>Open alerts ({len(snap.alerts)})</h2>'
            + table(["when", "kind", "courier", "group", "message", ""], rows)
            + "</section>"
        )
    counts: dict[str, int] = {}
    for row in snap.couriers:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = " · ".join(f"{badge(s)} {counts[s]}" for s in STATE_ORDER if counts.get(s))
    parts.append(f"<h1>Couriers</h1><p>{summary or 'no couriers configured'}</p>")
    rows = []
    ordered = sorted(snap.couriers, key=lambda r: (STATE_ORDER.get(r["status"], 9), r["courier"]))
    for r in ordered:
        last = r["last_run"]
        last_cell = ""
        if last:
            last_cell = (
                f"{badge(last['status'])} "
                f'<a class="run" href="/runs/{esc(last["run_id"])}">'
                f"{esc(local(last['started_at'], tz))}</a>"
            )
        b = r["backlog"]
        if b.get("error"):
            backlog = f'<span class="err">{esc("storage error: " + b["error"])}</span>'
        elif b["files"]:
            backlog = (
                f"{number(b['files'])} file(s), {esc(size(b['bytes']))}"
                f"<br><span class=muted>oldest {esc(local(b['oldest'], tz))}</span>"
            )
        else:
            backlog = '<span class="muted">none</span>'
        nxt = r["next_run"]
        rows.append(
            [
                f'<a class="courier" href="/runs?courier={esc(r["courier"])}">'
                f"{esc(r['courier'])}</a>",
                badge(r["status"]),
                esc(", ".join(r["groups"])),
                esc(local(r["last_success"], tz)) or '<span class="muted">never</span>',
                last_cell,
                esc(local(r["newest_partition"], tz)),
                backlog,
                f"{esc(local(nxt['at'], tz))} <span class=muted>({esc(nxt['group'])})</span>"
                if nxt
                else '<span class="muted">not scheduled</span>',
            ]
        )
    parts.append(
        table(
            [
                "courier",
                "status",
                "groups",
                "last success",
                "last run",
                "newest partition",
                "not loaded yet",
                "next run",
            ],
            rows,
            empty="no couriers: add config/couriers/NAME.toml",
        )  # fmt: skip
    )
    parts.append(
        f'<p class="muted">Times in {esc(tz.key)}. <a href="/api/status.json">status.json</a></p>'
    )
    return "".join(parts)


# -- runs ---------------------------------------------------------------------------------------


def _day(text: str | None, tz: ZoneInfo, name: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), time(), tz).astimezone(UTC)
    except ValueError:
        raise BadRequest(f"{name}: expected a date like 2026-11-23, got {text!r}") from None


def run_filters(params: dict[str, str], tz: ZoneInfo) -> tuple[str, list[Any], dict[str, str]]:
    where: list[str] = ["true"]
    values: list[Any] = []
    kept: dict[str, str] = {}
    for column, key in (("courier", "courier"), ("group_name", "group"), ("status", "status")):
        if params.get(key):
            where.append(f"{column} = ?")
            values.append(params[key])
            kept[key] = params[key]
    start = _day(params.get("from"), tz, "from")
    end = _day(params.get("to"), tz, "to")
    if start is not None:
        where.append("started_at >= ?")
        values.append(start)
        kept["from"] = params["from"]
    if end is not None:
        where.append("started_at < ?")
        values.append(end + timedelta(days=1))
        kept["to"] = params["to"]
    return " AND ".join(where), values, kept


def runs_page(snap: Snapshot | None, params: dict[str, str], tz: ZoneInfo, project: Any) -> str:
    if snap is None:
        return "<h1>Runs</h1><p class=muted>No snapshot of the state yet.</p>"
    where, values, kept = run_filters(params, tz)
    try:
        page = max(1, int(params.get("page") or 1))
    except ValueError:
        raise BadRequest("page: expected a number") from None
    cur = snap.cursor()
    total = cur.execute(f"SELECT count(*) FROM runs WHERE {where}", values).fetchone()[0]  # type: ignore[index]
    pages = max(1, -(-int(total) // PAGE_SIZE))
    page = min(page, pages)
    rows = cur.execute(
        "SELECT run_id, courier, group_name, status, window_start, window_end, started_at, "
        "files_loaded, rows_loaded, rows_rejected, duration_s, error FROM runs "
        f"WHERE {where} ORDER BY started_at DESC, run_id DESC "
        f"LIMIT {PAGE_SIZE} OFFSET {(page - 1) * PAGE_SIZE}",
        values,
    ).fetchall()
    couriers = sorted(set(project.couriers) | {r["courier"] for r in snap.couriers})
    groups = sorted(project.groups)

    def select(name: str, options: list[str], label: str) -> str:
        opts = ['<option value="">all</option>'] + [
            f'<option value="{esc(o)}"{" selected" if kept.get(name) == o else ""}>{esc(o)}'
            "</option>"
            for o in options
        ]
        return f'<label>{esc(label)}<select name="{name}">{"".join(opts)}</select></label>'

    form = (
        '<form class="filters" method="get" action="/runs">'
        + select("courier", couriers, "courier")
        + select("group", groups, "group")
        + select("status", RUN_STATUSES, "status")
        + f'<label>from<input type="date" name="from" value="{esc(kept.get("from"))}"></label>'
        + f'<label>to<input type="date" name="to" value="{esc(kept.get("to"))}"></label>'
        + '<button type="submit">Filter</button> <a href="/runs">clear</a></form>'
    )
    body = [
        (
            f'<a class="run" href="/runs/{esc(r[0])}">{esc(local(r[6], tz))}</a>',
            esc(r[1]),
            esc(r[2]),
            badge(r[3]),
            esc(f"{local(r[4], tz)} → {local(r[5], tz)}") if r[4] else "",
            number(r[7]),
            number(r[8]),
            number(r[9]),
            esc(seconds(r[10])),
            f'<span class="err">{esc(_first_line(r[11]))}</span>' if r[11] else "",
        )
        for r in rows
    ]
    pager = [f"<span>page {page} of {pages} · {number(total)} run(s)</span>"]
    if page > 1:
        pager.append(link("/runs", "← newer", **kept, page=page - 1))
    if page < pages:
        pager.append(link("/runs", "older →", **kept, page=page + 1))
    return (
        "<h1>Runs</h1>"
        + form
        + table(
            [
                "started",
                "courier",
                "group",
                "status",
                "window",
                "files",
                "rows loaded",
                "rejected",
                "duration",
                "error",
            ],
            body,
            numeric={5, 6, 7, 8},
            empty="no runs match",
        )  # fmt: skip
        + f'<div class="pager">{"".join(pager)}</div>'
        + f'<p class="muted">Runs of the last 90 days; times in {esc(tz.key)}.</p>'
    )


def _first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if text and text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_page(reader: StatusReader, snap: Snapshot | None, run_id: str, tz: ZoneInfo) -> str:
    if snap is None:
        raise NotFound(f"no run {run_id!r} (no snapshot of the state yet)")
    cur = snap.cursor()
    found = cur.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    names = [d[0] for d in found.description]
    row = found.fetchone()
    if row is None:
        raise NotFound(f"no run {run_id!r} in the last 90 days")
    run = dict(zip(names, row, strict=True))
    details, busy = reader.run_details(run_id)
    window = (
        f"{local(run['window_start'], tz)} → {local(run['window_end'], tz)} ({tz.key}); "
        f"{iso(run['window_start'])} → {iso(run['window_end'])}"
        if run["window_start"]
        else ""
    )
    facts = [
        ("courier", link("/runs", run["courier"], courier=run["courier"])),
        ("status", badge(run["status"])),
        ("trigger", esc(run["trigger"])),
        ("group", esc(run["group_name"])),
        ("window", esc(window)),
        ("started", esc(local(run["started_at"], tz, "%Y-%m-%d %H:%M:%S"))),
        ("finished", esc(local(run["finished_at"], tz, "%Y-%m-%d %H:%M:%S"))),
        ("duration", esc(seconds(run["duration_s"]))),
        ("files", esc(f"{number(run['files_found'])} found, {number(run['files_loaded'])} "
                      f"loaded, {number(run['files_skipped'])} already loaded")),
        ("bytes", esc(size(run["bytes"]))),
        ("rows", esc(f"{number(run['rows_read'])} read, {number(run['rows_loaded'])} loaded, "
                     f"{number(run['rows_rejected'])} rejected")),
        ("quarantined", number(run["quarantined"])),
    ]  # fmt: skip
    parts = [f"<h1>Run {esc(run_id)}</h1>"]
    if run["error"]:
        parts.append(f'<h2 class="err">Error</h2><pre class="error">{esc(run["error"])}</pre>')
    parts.append(
        '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    )
    feeds = json.loads(run["feeds"]) if run["feeds"] else {}
    parts.append("<h2>Feeds</h2>")
    parts.append(
        table(
            ["feed", "read", "loaded", "rejected"],
            [
                (
                    f'<a href="/feeds#feed-{esc(feed)}">{esc(feed)}</a>',
                    number(c.get("read")),
                    number(c.get("loaded")),
                    number(c.get("rejected")),
                )
                for feed, c in sorted(feeds.items())
            ],  # fmt: skip
            numeric={1, 2, 3},
            empty="no feed was loaded",
        )
    )
    if busy:
        parts.append(f'<p class="muted">{esc(busy)}; file list and quarantine unavailable.</p>')
    if details is not None:
        more = details["files_total"] - len(details["files"])
        parts.append(f"<h2>Files ({number(details['files_total'])})</h2>")
        parts.append(
            table(
                ["key", "size", "partition", "tag"],
                [
                    (
                        f'<span class="mono">{esc(f["key"])}</span>',
                        esc(size(f["size"])),
                        esc(local(f["partition_start"], tz)),
                        esc(f["file_tag"]),
                    )
                    for f in details["files"]
                ],  # fmt: skip
                numeric={1},
                empty="no files recorded by this run",
            )
            + (f"<p class=muted>and {number(more)} more</p>" if more > 0 else "")
        )
        parts.append(f"<h2>Quarantine ({number(details['quarantine_total'])})</h2>")
        parts.append(
            table(
                ["feed", "file", "line", "reason", "raw"],
                [
                    (
                        esc(q["feed"]),
                        f'<span class="mono">{esc(q["file"])}</span>',
                        number(q["line"]),
                        esc(q["reason"]),
                        f'<pre class="raw">{esc(q["raw"])}</pre>',
                    )
                    for q in details["quarantine"]
                ],  # fmt: skip
                numeric={2},
                empty="no quarantined records",
            )
        )
        if details["alerts"]:
            parts.append("<h2>Alerts</h2>")
            parts.append(
                table(
                    ["when", "kind", "message"],
                    [
                        (esc(local(a["created_at"], tz)), esc(a["kind"]), esc(a["message"]))
                        for a in details["alerts"]
                    ],
                )
            )
    return "".join(parts)


# -- feeds --------------------------------------------------------------------------------------


def feeds_page(snap: Snapshot | None) -> str:
    if snap is None:
        return "<h1>Feeds</h1><p class=muted>No snapshot of the state yet.</p>"
    parts = ["<h1>Feeds</h1>"]
    if not snap.feeds:
        parts.append("<p class=muted>No feeds: add feeds/FEED.toml</p>")
    for f in snap.feeds:
        stored = f["columns"] or {}
        cols = [
            (esc(name), esc(kind), esc(stored.get(name, "")),
             "yes" if name in f["primary_key"] else "")
            for name, kind in f["fields"].items()
        ]  # fmt: skip
        rows = "not created yet" if f["rows"] is None else f"{number(f['rows'])} row(s)"
        if f.get("error"):
            rows = f"cannot read its table: {f['error']}"
        parts.append(
            f'<h2 id="feed-{esc(f["feed"])}">{esc(f["feed"])}</h2>'
            f"<p>{esc(rows)} · destination {esc(f['destination'])}"
            + (f" · table <code>{esc(f['table'])}</code>" if f["table"] else "")
            + " · primary key "
            + (esc(", ".join(f["primary_key"])) or '<span class="muted">none</span>')
            + "</p>"
            + table(["column", "type", "stored as", "primary key"], cols)
        )
        if f["sample"]:
            names = list(f["sample"][0])
            parts.append(
                "<details open><summary>sample rows</summary>"
                + table(names, [[esc(r.get(n)) for n in names] for r in f["sample"]])
                + "</details>"
            )
    return "".join(parts)


# -- charts -------------------------------------------------------------------------------------


def charts_page(snap: Snapshot | None, params: dict[str, str], tz: ZoneInfo, now: datetime) -> str:
    if snap is None:
        return "<h1>Charts</h1><p class=muted>No snapshot of the state yet.</p>"
    courier = params.get("courier") or None
    where, values = "status = 'succeeded'", []
    if courier:
        where += " AND courier = ?"
        values.append(courier)
    cur = snap.cursor()
    hour_end = now.replace(minute=0, second=0, microsecond=0)
    hour_start = hour_end - timedelta(hours=48)
    hourly: dict[str, list[tuple[datetime, float]]] = {}
    for name, at, rows in cur.execute(
        "SELECT courier, date_trunc('hour', finished_at) AS h, sum(rows_loaded) FROM runs "
        f"WHERE {where} AND finished_at >= ? GROUP BY ALL ORDER BY h",
        [*values, hour_start],
    ).fetchall():
        hourly.setdefault(name, []).append((at, float(rows or 0)))
    local_today = now.astimezone(tz).date()
    day_start = datetime.combine(local_today - timedelta(days=29), time(), tz)
    day_end = datetime.combine(local_today, time(), tz)
    daily: dict[str, list[tuple[datetime, float]]] = {}
    for name, day, rows in cur.execute(
        f"SELECT courier, timezone(?, finished_at)::DATE AS d, sum(rows_loaded) FROM runs "
        f"WHERE {where} AND finished_at >= ? GROUP BY ALL ORDER BY d",
        [tz.key, *values, day_start],
    ).fetchall():
        daily.setdefault(name, []).append((datetime.combine(day, time(), tz), float(rows or 0)))
    durations: dict[str, list[tuple[datetime, float]]] = {}
    dur_start = now - timedelta(days=7)
    dur_where = "duration_s IS NOT NULL AND started_at >= ?" + (
        " AND courier = ?" if courier else ""
    )
    for name, at, took in cur.execute(
        f"SELECT courier, started_at, duration_s FROM runs WHERE {dur_where} "
        "ORDER BY started_at DESC LIMIT 2000",
        [dur_start, *([courier] if courier else [])],
    ).fetchall():
        durations.setdefault(name, []).append((at, float(took)))
    landed: dict[str, list[tuple[datetime, float]]] = {}
    for entry in snap.landed:
        landed.setdefault(entry["stream"], []).append((entry["hour"], float(entry["payloads"])))
    options = "".join(
        f'<option value="{esc(c)}"{" selected" if c == courier else ""}>{esc(c)}</option>'
        for c in sorted({r["courier"] for r in snap.couriers})
    )
    return (
        "<h1>Charts</h1>"
        '<form class="filters" method="get" action="/charts"><label>courier'
        f'<select name="courier"><option value="">all</option>{options}</select></label>'
        '<button type="submit">Show</button></form><div class="grid2">'
        + chart(hourly, hour_start, hour_end + timedelta(hours=1), tz,
                title="Rows loaded per hour, last 48 hours", unit="rows")
        + chart(daily, day_start, day_end, tz, daily=True,
                title="Rows loaded per day, last 30 days", unit="rows")
        + chart(durations, dur_start, now, tz, lines=False, daily=True,
                title="Run durations, last 7 days", unit="seconds")
        + chart(landed, hour_start, hour_end + timedelta(hours=1), tz,
                title="Payloads landed per hour per stream, last 48 hours", unit="payloads")
        + "</div>"
    )  # fmt: skip
