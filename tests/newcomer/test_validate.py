"""`courier validate` catches what runs would (issue 18, item 1), through the CLI."""

from __future__ import annotations

import json
import os
from datetime import date

from tests.newcomer.helpers import courier
from tests.projects import EVENTS_COURIER, ProjectFactory, event


def test_a_query_that_does_not_parse_fails_validate(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.query("junk", "SELEC garbage FROM;;")
    proc = courier(p, "validate")
    assert proc.returncode == 1
    assert "query 'junk'" in proc.stderr and "syntax error" in proc.stderr
    assert proc.stderr.count("junk") == 1 + proc.stderr.count("junk.sql")


def test_a_query_is_bound_against_the_pinned_schema(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(date(2026, 11, 22), 3, [event(1)])
    assert courier(p, "run", "events", "--date", "2026-11-22").returncode == 0
    assert courier(p, "validate").returncode == 0
    p.query(
        "order_items",
        "SELECT e.event_id, 1 AS item_idx, e.customer.mail AS customer_id FROM events AS e",
    )
    proc = courier(p, "validate")
    assert proc.returncode == 1
    assert 'Could not find key "mail" in struct' in proc.stderr and "email" in proc.stderr


def test_unknown_options_are_refused_with_a_suggestion(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.courier(
        "events",
        EVENTS_COURIER.replace(
            "options = { max_bad_records = 10 }",
            'options = { max_bad_record = 10, forcelist = ["x"] }',
        ),
    )
    proc = courier(p, "validate")
    assert proc.returncode == 1
    assert "unknown option 'max_bad_record': did you mean 'max_bad_records'?" in proc.stderr
    assert "unknown option 'forcelist': did you mean 'force_list'?" in proc.stderr
    run = courier(p, "run", "events", "--date", "2026-11-22")
    assert run.returncode == 1 and "did you mean 'max_bad_records'" in run.stderr


def test_an_invalid_courier_file_is_reported_once_as_invalid(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.write(
        "config/groups/daily.toml",
        'schedule = "0 6 * * *"\n[[couriers]]\nname = "events"\noffset = "1d"\n',
    )
    p.courier("events", "bogus = 1\n" + EVENTS_COURIER)
    proc = courier(p, "validate", "--json")
    errors = json.loads(proc.stdout)["errors"]
    assert proc.returncode == 1
    assert len(errors) == 1 and "[bogus]: unknown key" in errors[0], errors
    assert not any("is not defined" in e for e in errors)


def test_validate_for_a_front_end_lists_its_environment(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    for stream in ("a", "b"):
        p.write(
            f"config/streams/{stream}.toml",
            'payload = "json"\n[auth]\nalgorithm = "HS256"\nsecret = "${COURIER_JWT_SECRET}"\n'
            '[webhook]\npreset = "github"\nsecret = "${NEWCOMER_HOOK_SECRET}"\n',
        )
    env = {k: v for k, v in os.environ.items() if k != "NEWCOMER_HOOK_SECRET"}
    env["COURIER_JWT_SECRET"] = "newcomer-secret-0123456789abcdef0123"
    proc = courier(p, "validate", "--for", "serve", env=env)
    assert proc.returncode == 1
    assert "NEWCOMER_HOOK_SECRET" in proc.stdout and "NOT SET" in proc.stdout
    assert "COURIER_JWT_SECRET" in proc.stdout
    # each variable once per key and folder, with the files that use it
    hook = [x for x in proc.stdout.splitlines() if "NEWCOMER_HOOK_SECRET" in x]
    assert len(hook) == 1 and "[webhook.secret] in config/streams/: a, b" in hook[0]
    assert sum("COURIER_JWT_SECRET" in x for x in proc.stdout.splitlines()) == 1
    # one problem for the variable, naming both files
    [line] = [x for x in proc.stderr.splitlines() if "NEWCOMER_HOOK_SECRET" in x]
    assert "streams/a.toml [webhook.secret]" in line and "streams/b.toml [webhook.secret]" in line
    env["NEWCOMER_HOOK_SECRET"] = "hook"
    ok = courier(p, "validate", "--for", "serve", "--json", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    needs = json.loads(ok.stdout)["environment"]
    assert {n["variable"] for n in needs} == {"COURIER_JWT_SECRET", "NEWCOMER_HOOK_SECRET"}
    assert courier(p, "validate", "--for", "run", env=env).returncode == 0
