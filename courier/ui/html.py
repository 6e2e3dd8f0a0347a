"""HTML building blocks of the status page: every value goes through `esc` (or `attr`), the
layout links one stylesheet and no script, so the Content-Security-Policy can forbid both
inline code and anything not served by the page itself."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

NAV = [("/", "Overview"), ("/runs", "Runs"), ("/feeds", "Feeds"), ("/charts", "Charts")]

STATUS_LABELS = {
    "ok": "ok",
    "late": "late",
    "failing": "failing",
    "never_run": "never run",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "skipped": "skipped",
    "interrupted": "interrupted",
}

STYLESHEET = """
:root { --ok: #1a7f37; --late: #9a6700; --failing: #cf222e; --never: #6e7781; --run: #0969da;
  --line: #d0d7de; --soft: #f6f8fa; --text: #1f2328; --muted: #59636e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: var(--text); background: #fff; }
header { display: flex; align-items: baseline; gap: 24px; padding: 10px 24px;
  border-bottom: 1px solid var(--line); background: var(--soft); }
header .brand { font-weight: 700; font-size: 16px; }
header nav a { margin-right: 16px; color: var(--text); text-decoration: none; }
header nav a.here { font-weight: 700; border-bottom: 2px solid var(--run); }
header .fresh { margin-left: auto; color: var(--muted); font-size: 12px; }
header .fresh.stale { color: var(--late); font-weight: 600; }
main { padding: 16px 24px 40px; }
h1 { font-size: 20px; margin: 4px 0 12px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 12px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono, pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12px; }
pre { background: var(--soft); border: 1px solid var(--line); padding: 8px; white-space: pre-wrap;
  word-break: break-word; margin: 4px 0; }
a { color: var(--run); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; color: #fff; white-space: nowrap; }
.s-ok, .s-succeeded { background: var(--ok); }
.s-late, .s-skipped { background: var(--late); }
.s-failing, .s-failed, .s-interrupted, .s-abandoned { background: var(--failing); }
.s-never_run { background: var(--never); }
.s-running { background: var(--run); }
.alerts { border: 1px solid var(--failing); border-radius: 6px; padding: 6px 12px;
  margin-bottom: 16px; background: #fff5f5; }
.alerts h2 { margin: 4px 0; color: var(--failing); }
.muted { color: var(--muted); }
.err { color: var(--failing); }
form.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: end; margin-bottom: 8px; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
form.filters input, form.filters select, form.filters button { font: inherit; padding: 3px 6px; }
.pager { display: flex; gap: 16px; align-items: center; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.chart { margin: 6px 0 18px; }
.chart svg { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
  border-radius: 2px; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
  gap: 8px 24px; }
.login { max-width: 360px; margin: 80px auto; }
.login input { width: 100%; font: inherit; padding: 6px; margin: 6px 0; }
"""

FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<rect width="16" height="16" rx="3" fill="#0969da"/>'
    b'<path d="M4 8h6M8 5l3 3-3 3" stroke="#fff" stroke-width="1.8" fill="none"/></svg>'
)

PALETTE = ["#0969da", "#1a7f37", "#cf222e", "#9a6700", "#8250df", "#bf3989", "#1b7c83",
           "#953800", "#6e7781"]  # fmt: skip
LEGEND_CLASSES = "".join(f".c{i} {{ background: {c}; }}\n" for i, c in enumerate(PALETTE))
STYLESHEET += LEGEND_CLASSES


def esc(value: Any) -> str:
    """Text for an HTML element or quoted attribute: None is empty, everything else escaped."""
    return "" if value is None else html.escape(str(value), quote=True)


def link(href: str, text: Any, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f'<a href="{esc(href + ("?" + query if query else ""))}">{esc(text)}</a>'


def badge(status: str | None) -> str:
    status = status or "unknown"
    label = STATUS_LABELS.get(status, status)
    cls = "".join(c for c in status if c.isalnum() or c == "_")
    return f'<span class="badge s-{cls}">{esc(label)}</span>'


def local(value: Any, tz: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC timestamp (datetime or ISO text) on the project's wall clock."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return str(value.astimezone(tz).strftime(fmt))


def number(value: Any) -> str:
    return "" if value is None else f"{int(value):,}"


def size(value: Any) -> str:
    if value is None:
        return ""
    n = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(value)


def seconds(value: Any) -> str:
    if value is None:
        return ""
    s = float(value)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int] = frozenset(),  # type: ignore[assignment]
          empty: str = "nothing yet") -> str:  # fmt: skip
    """Cells are HTML already (built with esc/link/badge)."""
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}" class="muted">{esc(empty)}</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def layout(title: str, here: str, body: str, freshness: str, stale: bool) -> bytes:
    nav = "".join(
        f'<a href="{href}"{" class=here" if href == here else ""}>{esc(text)}</a>'
        for href, text in NAV
    )
    fresh = f'<span class="fresh{" stale" if stale else ""}">{esc(freshness)}</span>'
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · courier</title>"
        '<link rel="icon" href="/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/ui.css"></head><body>'
        f'<header><span class="brand">courier</span><nav>{nav}</nav>{fresh}</header>'
        f"<main>{body}</main></body></html>"
    ).encode()
