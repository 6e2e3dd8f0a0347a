"""`courier validate` names the group file and key of every group problem; the example
project's groups validate and dry-run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.projects import ProjectFactory
from tests.scheduling.conftest import courier_cli, group

REPO = Path(__file__).resolve().parents[2]


def problems(p: ProjectFactory) -> list[str]:
    proc = courier_cli(p, "validate", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["errors"]


def test_group_faults_name_file_and_key(project: ProjectFactory) -> None:
    group(project, "badcron", 'schedule = "0 25 * * *"\n[[couriers]]\nname = "events"\n')
    group(
        project,
        "badzone",
        'schedule = "0 6 * * *"\ntime_zone = "Mars/Olympus"\n[[couriers]]\nname = "events"\n',
    )
    group(project, "ghost", 'schedule = "0 6 * * *"\n[[couriers]]\nname = "nope"\n')
    group(
        project,
        "a",
        'schedule = "0 6 * * *"\nrun_after = ["b"]\n[[couriers]]\nname = "events"\n',
    )
    group(
        project,
        "b",
        'schedule = "0 6 * * *"\nrun_after = ["a", "missing"]\n[[couriers]]\nname = "clicks"\n',
    )
    group(
        project,
        "baddur",
        'schedule = "0 6 * * *"\n[[couriers]]\nname = "events"\noffset = "soon"\nwiat = "1h"\n',
    )
    errors = problems(project)
    text = "\n".join(errors)

    def has(file: str, key: str, words: str) -> bool:
        return any(f"config/groups/{file}.toml [{key}]" in e and words in e for e in errors)

    assert has("badcron", "schedule", "invalid cron schedule '0 25 * * *'"), text
    assert has("badcron", "schedule", "hour field '25'"), text
    assert has("badzone", "time_zone", "unknown time zone 'Mars/Olympus'"), text
    assert has("ghost", "couriers[0].name", "courier 'nope' is not defined"), text
    assert has("a", "run_after", "run_after makes a cycle: a -> b -> a"), text
    assert has("b", "run_after[1]", "group 'missing' is not defined"), text
    assert has("baddur", "couriers.0.offset", "expected a duration"), text
    assert has("baddur", "couriers.0.wiat", "unknown key"), text
    human = courier_cli(project, "validate")
    assert human.returncode == 1 and "Traceback" not in human.stderr
    assert "config/groups/badcron.toml [schedule]" in human.stderr


def test_alert_sinks_are_checked(project: ProjectFactory) -> None:
    project.write(
        "config/courier.toml",
        """
        [alerts]
        sinks = [{ type = "webhook", url = "ftp://x" }, { type = "command", command = [] },
                 { type = "pager" }]
        """,
    )
    errors = "\n".join(problems(project))
    assert "config/courier.toml" in errors
    assert "a webhook url starts with http:// or https://" in errors
    assert "alerts.sinks.1.command" in errors
    assert "alerts.sinks.2" in errors


def test_example_groups_validate_and_dry_run(tmp_path: Path) -> None:
    for folder in ("config", "feeds", "queries"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    p = ProjectFactory.__new__(ProjectFactory)
    p.root = tmp_path
    ok = courier_cli(p, "validate")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "group(s)" in ok.stdout and "0 group(s)" not in ok.stdout
    p.land(
        "web-events/2026/11/22/07/part-a-000000.ndjson",
        [{"event_id": "e1", "items": [], "customer": {"id": 1}}],
    )
    dry = courier_cli(p, "group", "run", "daily", "--at", "2026-11-23T06:00", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "web_events [2026-11-21T06:00:00Z, 2026-11-22T06:00:00Z)" in dry.stdout
    assert "partitions: 2026-11-22T00:00:00Z" in dry.stdout
    assert "web-events/2026/11/22/07/part-a-000000.ndjson" in dry.stdout
    out = json.loads(
        courier_cli(
            p, "group", "run", "hourly", "--at", "2026-11-23T10:05", "--dry-run", "--json"
        ).stdout
    )
    assert out["status"] == "dry_run"
    assert out["couriers"][0]["partitions"] == ["2026-11-23T09:00:00Z"]
