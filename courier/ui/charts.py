"""Charts drawn as SVG on the server: no script, no library, nothing fetched. Each point is a
<circle> with a <title> (the browser shows it on hover); the time axis is labelled on the
project's wall clock."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from courier.ui.html import PALETTE, esc

WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 42
MAX_SERIES = len(PALETTE) - 1  # the rest are summed as "other"

Series = dict[str, list[tuple[datetime, float]]]


def nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp:
            return m * exp
    return 10 * exp


def short(value: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= div:
            return f"{value / div:g}{unit}"
    return f"{value:g}"


def top_series(series: Series, limit: int = MAX_SERIES) -> Series:
    """The `limit` largest series by total; the others summed point by point as 'other'."""
    ranked = sorted(series, key=lambda k: (-sum(v for _, v in series[k]), k))
    kept = {k: series[k] for k in ranked[:limit]}
    rest = ranked[limit:]
    if rest:
        summed: dict[datetime, float] = {}
        for k in rest:
            for t, v in series[k]:
                summed[t] = summed.get(t, 0.0) + v
        kept["other"] = sorted(summed.items())
    return kept


def time_ticks(start: datetime, end: datetime, tz: ZoneInfo, daily: bool) -> list[datetime]:
    """Local midnights every few days (daily) or local hours divisible by 6 (hourly)."""
    ticks = []
    if daily:
        day = start.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        span_days = max(1, (end - start).days)
        every = 1 if span_days <= 8 else 5
        i = 0
        while day <= end:
            if day >= start and i % every == 0:
                ticks.append(day)
            day = (day + timedelta(days=1, hours=2)).replace(hour=0)  # across DST
            i += 1
    else:
        t = start.astimezone(tz).replace(minute=0, second=0, microsecond=0)
        while t <= end:
            local_t = t.astimezone(tz)
            if t >= start and local_t.hour % 6 == 0 and local_t.minute == 0:
                ticks.append(t)
            t += timedelta(hours=1)
    return ticks


def chart(
    series: Series,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    *,
    title: str,
    unit: str,
    daily: bool = False,
    lines: bool = True,
) -> str:
    """An SVG line (or scatter) chart of series over [start, end]."""
    series = top_series({k: v for k, v in series.items() if v})
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = nice_ceiling(max((v for pts in series.values() for _, v in pts), default=0.0))
    span = max((end - start).total_seconds(), 1.0)

    def x(t: datetime) -> float:
        return LEFT + plot_w * (t - start).total_seconds() / span

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / peak)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#d0d7de"/>',
    ]
    for i in range(5):
        v = peak * i / 4
        yy = y(v)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" '
            'stroke="#eaeef2"/>'
            f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#59636e">{esc(short(v))}</text>'
        )
    fmt = "%b %d" if daily else "%a %H:%M"
    for t in time_ticks(start, end, tz, daily):
        xx = x(t)
        parts.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#eaeef2"/>'
            f'<text x="{xx:.1f}" y="{TOP + plot_h + 16}" font-size="11" text-anchor="middle" '
            f'fill="#59636e">{esc(t.astimezone(tz).strftime(fmt))}</text>'
        )
    zone = tz.key if hasattr(tz, "key") else str(tz)
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" font-size="11" '
        f'text-anchor="middle" fill="#59636e">{esc(f"time ({zone})")}</text>'
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" font-size="11" text-anchor="middle" '
        f'fill="#59636e" transform="rotate(-90 12 {TOP + plot_h / 2:.0f})">{esc(unit)}</text>'
    )
    legend = []
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = sorted(pts)
        if lines and len(pts) > 1:
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
        for t, v in pts:
            label = f"{name}: {short(v)} {unit} at {t.astimezone(tz):%Y-%m-%d %H:%M}"
            parts.append(
                f'<circle class="point" cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.6" '
                f'fill="{color}"><title>{esc(label)}</title></circle>'
            )
        legend.append(f'<span><i class="c{i % len(PALETTE)}"></i>{esc(name)}</span>')
    if not series:
        parts.append(
            f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" font-size="13" '
            'text-anchor="middle" fill="#59636e">no data in this period</text>'
        )
    parts.append("</svg>")
    return (
        f'<figure class="chart"><figcaption><strong>{esc(title)}</strong></figcaption>'
        f"{''.join(parts)}<div class=legend>{''.join(legend)}</div></figure>"
    )
