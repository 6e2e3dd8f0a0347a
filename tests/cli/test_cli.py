"""The command line as a user runs it: a real subprocess, exit codes, output shapes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import date

import pytest

from tests.projects import ProjectFactory, event
from tests.servers import azurite_connection_string


def courier(project: ProjectFactory, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(project.root), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validate_ok_and_failing(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    ok = courier(p, "validate")
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 1 courier(s)")
    p.feed("broken", '[fields]\na = "nope"\n')
    p.courier("bad", 'file_pattern = "x/yyyy"\nfile_tag = "bad"\n')
    bad = courier(p, "validate")
    assert bad.returncode == 1
    assert "2 config problem(s)" in bad.stderr or "config problem(s)" in bad.stderr
    assert "feeds/broken.toml" in bad.stderr and "config/couriers/bad.toml" in bad.stderr
    assert "Traceback" not in bad.stderr
    as_json = json.loads(courier(p, "validate", "--json").stdout)
    assert as_json["ok"] is False and len(as_json["errors"]) >= 2


def test_run_json_files_runs_and_feeds(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(date(2026, 11, 22), 3, [event(1), event(2)])
    listed = json.loads(courier(p, "files", "events", "--date", "2026-11-22", "--json").stdout)
    assert [f["key"] for f in listed["files"]] == ["events/2026/11/22/03/part-test-000000.ndjson"]
    proc = courier(p, "run", "events", "--date", "2026-11-22", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in (
        "run_id",
        "courier",
        "status",
        "window",
        "files",
        "bytes",
        "feeds",
        "quarantined",
        "duration_s",
        "error",
    ):
        assert key in result
    assert result["status"] == "succeeded"
    assert result["window"] == {"start": "2026-11-22T00:00:00Z", "end": "2026-11-23T00:00:00Z"}
    assert result["feeds"]["order_items"] == {"read": 4, "loaded": 4, "rejected": 0}
    runs = json.loads(courier(p, "runs", "--json").stdout)
    assert [r["run_id"] for r in runs] == [result["run_id"]]
    shown = json.loads(courier(p, "feeds", "show", "order_items", "--json", "--sample", "2").stdout)
    assert (
        shown["rows"] == 4
        and len(shown["sample"]) == 2
        and shown["primary_key"] == ["event_id", "item_idx"]
    )
    listed_feeds = json.loads(courier(p, "feeds", "list", "--json").stdout)
    assert listed_feeds == [
        {"feed": "order_items", "fields": 6, "primary_key": "event_id,item_idx", "rows": 4}
    ]
    text = courier(p, "run", "events", "--date", "2026-11-22")
    assert text.returncode == 0 and "skipped" in text.stdout


def test_failed_run_exits_1_without_traceback(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    proc = courier(p, "run", "events", "--date", "2026-11-22")
    assert proc.returncode == 1
    assert "no files for courier events" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_usage_errors_exit_2(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    assert courier(p, "run").returncode == 2
    assert courier(p, "no-such-command").returncode == 2


def test_unreachable_storage_is_a_short_error_and_a_failed_run(
    make_project: ProjectFactory,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    p = make_project.events_project()
    p.write(
        "config/courier.toml",
        f"""
        [storages.lake]
        type = "s3"
        bucket = "acme"
        endpoint_url = "http://127.0.0.1:{port}"
        region = "us-east-1"
        access_key_id = "test"
        secret_access_key = "test-secret-value"
        """,
    )
    text = (
        (p.root / "config/couriers/events.toml")
        .read_text()
        .replace('storage = "landing"', 'storage = "lake"')
    )
    p.write("config/couriers/events.toml", text)
    proc = courier(p, "run", "events", "--date", "2026-11-22", "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["status"] == "failed"
    assert "storage 'lake'" in result["error"]
    assert "Traceback" not in proc.stderr and "test-secret-value" not in proc.stdout + proc.stderr
    runs = json.loads(courier(p, "runs", "--json").stdout)
    assert runs[0]["status"] == "failed" and "storage 'lake'" in runs[0]["error"]
    debug = subprocess.run(
        [
            sys.executable,
            "-m",
            "courier",
            "--project",
            str(p.root),
            "--debug",
            "files",
            "events",
            "--date",
            "2026-11-22",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.integration
def test_wrong_azure_key_is_a_short_error_and_a_failed_run(
    make_project: ProjectFactory, azurite_endpoint: str
) -> None:
    wrong = "d3Jvbmcta2V5LW5vdC10aGUtcmVhbC1vbmUtZm9yLWF6dXJpdGUtdGVzdHMtMTIzNDU2Nzg5MA=="
    p = make_project.events_project()
    p.write(
        "config/courier.toml",
        """
        [storages.blob]
        type = "azure"
        container = "streams"
        connection_string = "${AZURE_STORAGE_CONNECTION_STRING}"
        """,
    )
    text = (p.root / "config/couriers/events.toml").read_text()
    p.write("config/couriers/events.toml", text.replace('"landing"', '"blob"'))
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(
        azurite_endpoint, key=wrong
    )}  # fmt: skip

    def with_env(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "courier", "--project", str(p.root), *args],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip

    proc = with_env("run", "events", "--date", "2026-11-22", "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["status"] == "failed"
    assert "storage 'blob'" in result["error"] and "connection_string" in result["error"]
    assert "Traceback" not in proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    runs = json.loads(with_env("runs", "--json").stdout)
    assert [(r["status"], r["error"]) for r in runs] == [("failed", result["error"])]
