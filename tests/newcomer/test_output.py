"""Output people read (issue 18, item 3): tables that never cut cells when piped, `--wide` on
a terminal, values as people write them, `--version`."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from courier.display import display, table
from tests.newcomer.helpers import courier, courier_on_terminal
from tests.projects import ProjectFactory, event

LONG_KEY = "events/2026/11/22/03/part-a-writer-with-a-long-name-000000.ndjson"


def test_piped_tables_keep_whole_cells_and_a_terminal_cuts_unless_wide(
    make_project: ProjectFactory,
) -> None:
    p = make_project.events_project()
    p.land(LONG_KEY, [event(1)])
    piped = courier(p, "files", "events", "--date", "2026-11-22")
    assert piped.returncode == 0, piped.stderr
    assert LONG_KEY in piped.stdout and "..." not in piped.stdout

    on_terminal = courier_on_terminal(p, "files", "events", "--date", "2026-11-22")
    assert LONG_KEY not in on_terminal and LONG_KEY[:37] + "..." in on_terminal
    wide = courier_on_terminal(p, "--wide", "files", "events", "--date", "2026-11-22")
    assert LONG_KEY in wide


def test_values_are_shown_as_people_write_them() -> None:
    from datetime import UTC, datetime

    assert display(Decimal("8.30")) == "8.30"
    assert display(datetime(2026, 11, 22, 7, 5, tzinfo=UTC)) == "2026-11-22T07:05:00Z"
    assert display({"a": [1, None]}) == '{"a":[1,null]}'
    text = table([{"k": "x", "v": Decimal("1.50")}, {"k": "longer", "v": None}], ["k", "v"])
    assert text.splitlines() == ["k       v", "------  ----", "x       1.50", "longer"]


def test_feed_samples_and_runs_show_no_python_reprs(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(date(2026, 11, 22), 3, [event(1), event(2)])
    assert courier(p, "run", "events", "--date", "2026-11-22").returncode == 0
    shown = courier(p, "feeds", "show", "order_items", "--sample", "2")
    assert shown.returncode == 0, shown.stderr
    assert "datetime.datetime" not in shown.stdout and "Decimal(" not in shown.stdout
    assert "primary key event_id, item_idx" in shown.stdout and "['" not in shown.stdout
    assert re.search(r" 3\.00 .* 2026-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", shown.stdout)


def test_version(make_project: ProjectFactory) -> None:
    proc = courier(make_project, "--version")
    assert proc.returncode == 0 and re.fullmatch(r"courier \d+\.\d+\.\d+\S*\n", proc.stdout)


def test_a_run_shows_progress_on_a_terminal_only(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(date(2026, 11, 22), 3, [event(1)])
    shown = courier_on_terminal(p, "run", "events", "--date", "2026-11-22", "--reload")
    assert re.search(r"events: reading 1 file\(s\), \d+ bytes", shown)
    as_json = courier_on_terminal(p, "run", "events", "--date", "2026-11-22", "--reload", "--json")
    assert "reading" not in as_json and "\x1b[K" not in as_json
    piped = courier(p, "run", "events", "--date", "2026-11-22", "--reload")
    assert "reading" not in piped.stdout + piped.stderr
