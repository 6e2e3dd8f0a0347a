"""Joda-style file patterns: quoted literals, `yyyy MM dd HH` date tokens, `*` within one folder.

    'web-events/'yyyy/MM/dd/HH'/*.ndjson'   ->   web-events/2026/11/22/07/*.ndjson

Pure functions: no clock, no I/O. Times given here are local to the pattern's time zone.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime

TOKENS = {"yyyy": (4, "%Y"), "MM": (2, "%m"), "dd": (2, "%d"), "HH": (2, "%H")}
_TOKEN_RE = re.compile(r"yyyy|MM|dd|HH")


@dataclass(frozen=True)
class FilePattern:
    source: str
    parts: tuple[tuple[str, str], ...]  # ("lit", text) | ("tok", "yyyy")

    @classmethod
    def parse(cls, text: str) -> FilePattern:
        parts: list[tuple[str, str]] = []
        i = 0
        literal: list[str] = []

        def flush() -> None:
            if literal:
                parts.append(("lit", "".join(literal)))
                literal.clear()

        while i < len(text):
            ch = text[i]
            if ch == "'":
                if text.startswith("''", i):
                    literal.append("'")
                    i += 2
                    continue
                close = text.find("'", i + 1)
                while close != -1 and text.startswith("''", close):
                    close = text.find("'", close + 2)
                if close == -1:
                    raise ValueError(
                        f"unclosed quote at position {i} in pattern {text!r}: close literals with '"
                    )
                literal.append(text[i + 1 : close].replace("''", "'"))
                i = close + 1
                continue
            m = _TOKEN_RE.match(text, i)
            if m:
                flush()
                parts.append(("tok", m.group(0)))
                i = m.end()
                continue
            if ch.isalpha():
                raise ValueError(
                    f"unknown date letter {ch!r} at position {i} in pattern {text!r}: "
                    "use yyyy, MM, dd, HH, and quote literal text like 'events/'"
                )
            literal.append(ch)
            i += 1
        flush()
        pattern = cls(text, tuple(parts))
        rendered = "".join(v for k, v in parts if k == "lit")
        if rendered.startswith("/") or "/../" in f"/{rendered}/" or "\\" in rendered:
            raise ValueError(f"pattern {text!r} must be a relative path without '..' segments")
        if pattern.has_hour and not pattern.has_day:
            raise ValueError(f"pattern {text!r} has HH but no dd: an hour needs its day")
        return pattern

    @property
    def tokens(self) -> set[str]:
        return {v for k, v in self.parts if k == "tok"}

    @property
    def has_hour(self) -> bool:
        return "HH" in self.tokens

    @property
    def has_day(self) -> bool:
        return "dd" in self.tokens

    def render(self, when: datetime) -> str:
        """The pattern for one time, date tokens filled in; `*` wildcards stay."""
        return "".join(v if k == "lit" else when.strftime(TOKENS[v][1]) for k, v in self.parts)

    def key_regex(self) -> re.Pattern[str]:
        """Match any key of this pattern, capturing its date tokens by name."""
        out = []
        seen: set[str] = set()
        for kind, value in self.parts:
            if kind == "lit":
                out.append(wildcard_regex(value))
            else:
                width = TOKENS[value][0]
                name = {"yyyy": "y", "MM": "m", "dd": "d", "HH": "h"}[value]
                if name in seen:
                    out.append(f"(?P={name})")
                else:
                    seen.add(name)
                    out.append(f"(?P<{name}>\\d{{{width}}})")
        return re.compile("".join(out) + r"\Z")

    def date_of(self, key: str) -> datetime | None:
        """The (naive, pattern-local) time a key stands for, or None when it does not match."""
        m = self.key_regex().match(key)
        if not m:
            return None
        g = m.groupdict()
        try:
            return datetime(
                int(g.get("y") or 1970),
                int(g.get("m") or 1),
                int(g.get("d") or 1),
                int(g.get("h") or 0),
            )
        except ValueError:
            return None


def wildcard_regex(text: str) -> str:
    return "".join("[^/]*" if c == "*" else re.escape(c) for c in text)


def list_prefix(rendered: str) -> str:
    """The longest literal start of a rendered pattern: the only thing listed in storage."""
    star = rendered.find("*")
    return rendered if star == -1 else rendered[:star]


@functools.lru_cache(maxsize=8192)
def rendered_regex(rendered: str) -> re.Pattern[str]:
    """Compiled once per rendered pattern: the status page lists the same partitions every
    few seconds, and compiling is most of the cost of listing a local folder."""
    return re.compile(wildcard_regex(rendered) + r"\Z")
