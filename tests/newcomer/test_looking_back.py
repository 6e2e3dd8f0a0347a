"""Finding out what went wrong (issue 18, item 4): `courier runs show RUN_ID`, `courier
quarantine [--courier C] [--run R]`, `runs --courier nosuch`."""

from __future__ import annotations

import json
from datetime import date

from tests.newcomer.helpers import courier
from tests.projects import ProjectFactory, event

DAY = date(2026, 11, 22)


def test_runs_show_and_quarantine(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    good = b"".join(json.dumps(event(i)).encode() + b"\n" for i in (1, 2))
    p.land_hour(DAY, 3, good + b'{"event_id": "broken\n' + json.dumps(event(3)).encode() + b"\n")
    ran = courier(p, "run", "events", "--date", "2026-11-22", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]

    shown = courier(p, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"run {run_id}: courier events, succeeded" in out
    assert "window:   [2026-11-22T00:00:00Z, 2026-11-23T00:00:00Z)" in out
    assert "events/2026/11/22/03/part-test-000000.ndjson" in out
    assert "order_items" in out and f"courier quarantine --run {run_id}" in out
    detail = json.loads(courier(p, "runs", "show", run_id, "--json").stdout)
    assert detail["feeds"]["order_items"]["loaded"] == 6 and detail["quarantined"] == 1
    assert [f["key"] for f in detail["files"]["list"]] == [
        "events/2026/11/22/03/part-test-000000.ndjson"
    ]

    listed = courier(p, "quarantine", "--run", run_id)
    assert listed.returncode == 0, listed.stderr
    assert "part-test-000000.ndjson" in listed.stdout and '{"event_id": "broken' in listed.stdout
    [row] = json.loads(courier(p, "quarantine", "--courier", "events", "--json").stdout)
    assert row["file"] == "events/2026/11/22/03/part-test-000000.ndjson" and row["line"] == 3
    assert row["run_id"] == run_id and row["reason"]

    missing = courier(p, "runs", "show", "nope")
    assert missing.returncode == 1 and "no run 'nope'" in missing.stderr
    assert run_id in missing.stderr  # the newest runs are named


def test_a_failed_run_shows_its_whole_error(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.query("order_items", "SELECT e.no_such_column FROM events AS e")
    p.land_hour(DAY, 3, [event(1)])
    ran = courier(p, "run", "events", "--date", "2026-11-22", "--json")
    assert ran.returncode == 1
    result = json.loads(ran.stdout)
    shown = courier(p, "runs", "show", result["run_id"])
    assert shown.returncode == 0 and "failed" in shown.stdout
    assert result["error"].splitlines()[0] in shown.stdout
    assert "no_such_column" in shown.stdout


def test_runs_and_quarantine_of_an_unknown_courier(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    for args in (("runs", "--courier", "nosuch"), ("quarantine", "--courier", "nosuch")):
        proc = courier(p, *args)
        assert proc.returncode == 1
        assert "no courier named 'nosuch' (known: events)" in proc.stderr
    assert courier(p, "runs").stdout == "no runs yet\n"


def test_quarantine_of_an_unknown_run_names_it(make_project: ProjectFactory) -> None:
    """`quarantine --run` with a mistyped id says so, as `runs show` does, rather than
    'no quarantined records' (which reads as: that run was clean)."""
    p = make_project.events_project()
    p.land_hour(DAY, 3, [event(1)])
    ran = courier(p, "run", "events", "--date", "2026-11-22", "--json")
    run_id = json.loads(ran.stdout)["run_id"]
    clean = courier(p, "quarantine", "--run", run_id)
    assert clean.returncode == 0 and clean.stdout == f"no quarantined records for run {run_id}\n"
    for args in (("quarantine", "--run", "nosuch"), ("runs", "show", "nosuch")):
        proc = courier(p, *args)
        assert proc.returncode == 1
        assert f"no run 'nosuch' in courier.runs (newest: {run_id})" in proc.stderr
