"""File patterns: parsing, rendering, matching; property tests over random times and names."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from courier.patterns import FilePattern, list_prefix, rendered_regex

STREAM = "'web-events/'yyyy/MM/dd/HH'/*.ndjson'"


def test_render_stream_layout() -> None:
    p = FilePattern.parse(STREAM)
    assert p.render(datetime(2026, 11, 22, 7)) == "web-events/2026/11/22/07/*.ndjson"
    assert p.has_hour and p.has_day


def test_unquoted_separators_and_escaped_quote() -> None:
    p = FilePattern.parse("'drop/it''s/'yyyy-MM-dd'_export.csv'")
    assert p.render(datetime(2026, 1, 2)) == "drop/it's/2026-01-02_export.csv"
    assert not p.has_hour


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("'a/'yyyy/MM/dd/HH'/x", "unclosed quote"),
        ("'a/'yyyy/MM/dd/HH/mm'/x'", "unknown date letter 'm'"),
        ("events/yyyy", "unknown date letter 'e'"),
        ("'a/'yyyy/MM/HH'/*'", "has HH but no dd"),
        ("'../'yyyy/MM/dd'/*'", "without '..'"),
        ("'/abs/'yyyy/MM/dd'/*'", "relative path"),
    ],
)
def test_bad_patterns_say_what_to_do(pattern: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FilePattern.parse(pattern)


def test_wildcard_never_crosses_a_folder() -> None:
    regex = rendered_regex("web-events/2026/11/22/07/*.ndjson")
    assert regex.match("web-events/2026/11/22/07/part-a-1.ndjson")
    assert not regex.match("web-events/2026/11/22/07/nested/part.ndjson")
    assert not regex.match("web-events/2026/11/22/07/part.ndjson.tmp")


def test_list_prefix_is_the_literal_start() -> None:
    assert list_prefix("web-events/2026/11/22/07/*.ndjson") == "web-events/2026/11/22/07/"
    assert list_prefix("a/b/part-*-x.cbor") == "a/b/part-"
    assert list_prefix("exact/file.json") == "exact/file.json"


times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 12, 31)).map(
    lambda t: t.replace(minute=0, second=0, microsecond=0)
)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=20)


@given(times, names)
def test_rendered_keys_match_and_date_back(when: datetime, name: str) -> None:
    p = FilePattern.parse(STREAM)
    rendered = p.render(when)
    key = rendered.replace("*", name)
    assert rendered_regex(rendered).match(key)
    assert key.startswith(list_prefix(rendered))
    assert p.date_of(key) == when


@given(times, times, names)
def test_keys_of_other_hours_do_not_match(a: datetime, b: datetime, name: str) -> None:
    p = FilePattern.parse(STREAM)
    key = p.render(b).replace("*", name)
    assert bool(rendered_regex(p.render(a)).match(key)) == (a == b)


@given(times, st.text(alphabet="abc/", min_size=1, max_size=10))
def test_wildcard_with_slash_never_matches(when: datetime, name: str) -> None:
    p = FilePattern.parse(STREAM)
    key = p.render(when).replace("*", name)
    assert bool(rendered_regex(p.render(when)).match(key)) == ("/" not in name)


@given(times)
def test_day_pattern_dates_to_midnight(when: datetime) -> None:
    p = FilePattern.parse("'d/'yyyy/MM/dd'/*.json'")
    key = p.render(when).replace("*", "x")
    assert p.date_of(key) == when.replace(hour=0)
