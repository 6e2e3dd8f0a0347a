"""Project discovery and validation: every problem at once, each with file, key and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from courier.errors import ConfigError, ConfigErrors
from courier.project import find_project_root
from courier.validate import load_project
from tests.projects import ProjectFactory


def test_discovery_order(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = make_project.root
    nested = root / "queries" / "deep"
    nested.mkdir(parents=True)
    assert find_project_root(cwd=nested) == root.resolve()
    other = tmp_path / "other"
    (other / "config").mkdir(parents=True)
    (other / "config" / "courier.toml").write_text("")
    monkeypatch.setenv("COURIER_PROJECT", str(other))
    assert find_project_root(cwd=nested) == other.resolve()
    assert find_project_root(root, cwd=nested) == root.resolve()
    with pytest.raises(ConfigError, match="Pass --project DIR or set COURIER_PROJECT"):
        monkeypatch.delenv("COURIER_PROJECT")
        find_project_root(cwd=tmp_path)


def test_embedded_defaults(make_project: ProjectFactory) -> None:
    project = make_project.load()
    assert list(project.settings.storages) == ["landing"]
    assert project.settings.feeds.database == ".courier/feeds.duckdb"
    assert project.settings.state.database == ".courier/feeds.duckdb"


def test_env_references_resolve_and_missing_ones_are_named(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project
    p.write(
        "config/courier.toml",
        """
        [storages.lake]
        type = "s3"
        bucket = "${TEST_BUCKET}"
        endpoint_url = "${TEST_ENDPOINT}"
        """,
    )
    monkeypatch.setenv("TEST_BUCKET", "acme-streams")
    project = p.load()
    assert project.settings.storages["lake"].bucket == "acme-streams"  # type: ignore[union-attr]
    assert project.settings.storages["lake"].endpoint_url is None  # type: ignore[union-attr]
    monkeypatch.delenv("TEST_BUCKET")
    with pytest.raises(ConfigErrors) as err:
        p.load()
    (e,) = err.value.errors
    assert "config/courier.toml" in str(e) and "storages.lake" in str(e)
    assert "TEST_BUCKET" in str(e)


def test_env_references_with_a_default(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project
    p.write(
        "config/courier.toml",
        """
        [storages.lake]
        type = "s3"
        bucket = "${TEST_BUCKET:-acme-default}"
        endpoint_url = "http://${TEST_HOST:-127.0.0.1}:${TEST_PORT:-9000}/"
        """,
    )
    monkeypatch.delenv("TEST_BUCKET", raising=False)
    monkeypatch.setenv("TEST_PORT", "")  # empty counts as unset, as in a shell
    lake = p.load().settings.storages["lake"]
    assert lake.bucket == "acme-default"  # type: ignore[union-attr]
    assert lake.endpoint_url == "http://127.0.0.1:9000/"  # type: ignore[union-attr]
    monkeypatch.setenv("TEST_BUCKET", "acme-streams")
    monkeypatch.setenv("TEST_PORT", "4566")
    lake = p.load().settings.storages["lake"]
    assert lake.bucket == "acme-streams"  # type: ignore[union-attr]
    assert lake.endpoint_url == "http://127.0.0.1:4566/"  # type: ignore[union-attr]


def test_all_problems_reported_at_once(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.feed("broken", 'primary_key = ["nope"]\n[fields]\na = "varchar"\n')
    p.courier(
        "bad",
        """
        storage = "nowhere"
        file_pattern = "'x/'yyyy/MM/dd/HH'/*'"
        file_tag = "bad"
        colour = "red"
        [load_operations]
        ghost = [{ type = "load", file = "bad" }]
        order_items = [{ type = "sql", sql-query = "missing_query", sql-files = [{ file = "other" }] }]
        """,
    )
    p.courier("worse", 'file_pattern = "events/yyyy"\nfile_tag = "worse"\n')
    p.write("config/couriers/syntax.toml", "this is = = not toml")
    project = load_project(p.root, strict=False)
    text = "\n".join(str(e) for e in project.errors)
    assert "feeds/broken.toml [fields]: field 'a' has type 'varchar'; use string" in text
    assert "config/couriers/bad.toml [colour]: unknown key" in text
    assert "syntax.toml: invalid TOML syntax" in text
    assert "worse.toml [file_pattern]: unknown date letter 'e'" in text
    with pytest.raises(ConfigErrors) as err:
        load_project(p.root)
    assert len(err.value.errors) == len(project.errors) >= 4


def test_cross_checks_name_file_key_and_fix(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.courier(
        "bad",
        """
        storage = "nowhere"
        file_pattern = "'x/'yyyy/MM/dd/HH'/*'"
        file_tag = "bad"
        [load_operations]
        ghost = [{ type = "load", file = "bad" }]
        order_items = [{ type = "sql", sql-query = "missing_query", sql-files = [{ file = "other" }] }]
        """,
    )
    p.feed("keyless", 'primary_key = ["nope"]\n[fields]\na = "string"\n')
    errors = [str(e) for e in load_project(p.root, strict=False).errors]
    joined = "\n".join(errors)
    assert "bad.toml [storage]: storage 'nowhere' is not defined; add [storages.nowhere]" in joined
    assert (
        "bad.toml [load_operations.ghost]: feed 'ghost' is not defined; add feeds/ghost.toml"
        in joined
    )
    assert "sql-query 'missing_query' has no file queries/missing_query.sql" in joined
    assert "file tag 'other' is not this courier's file_tag 'bad'" in joined
    assert "keyless.toml [primary_key]" not in joined  # reported under the model, with the field
    assert "primary_key names 'nope', which is not under [fields]" in joined


def test_spark_aliases_and_json_couriers(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    (p.root / "config/couriers/events.toml").unlink()
    p.write(
        "config/couriers/events.json",
        """
        {"storage": "landing", "file_pattern": "'events/'yyyy/MM/dd/HH'/*.ndjson'", "prefix": "00",
         "file_tag": "events",
         "load_operations": {"order_items": [{"type": "spark-sql", "spark-sql-query": "order_items",
                                              "spark-sql-files": [{"file": "events"}]}]}}
        """,
    )
    project = p.load()
    op = project.couriers["events"].load_operations["order_items"][0]
    assert (op.type, op.sql_query, op.tags) == ("sql", "order_items", ["events"])


@pytest.mark.parametrize("name", ["bad-name", "1abc", "a b"])
def test_identifiers_are_validated(make_project: ProjectFactory, name: str) -> None:
    p = make_project
    p.feed("ok", f'[fields]\n"{name}" = "string"\n')
    errors = [str(e) for e in load_project(p.root, strict=False).errors]
    assert any("must start with a letter" in e for e in errors)
