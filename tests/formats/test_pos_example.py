"""The point-of-sale example end to end: XML payloads landed as CBOR items, the repository's
pos_tenders courier, query and feed through Context.run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import duckdb
import pytest

from courier.context import Context
from courier.formats.xml import parse_xml
from courier.validate import load_project

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
SAMPLE = (REPO / "samples" / "pos-records.xml").read_bytes()
ONE = b"""<records><record><id>pos-0003</id><store>hamburg-01</store>
<ts>2026-11-22T18:02:00Z</ts><total>5.00</total>
<tenders><tender><type>voucher</type><amount>5.00</amount></tender></tenders>
</record></records>"""

XML_COURIER = """
storage = "landing"
file_pattern = "'pos-xml/'yyyy/MM/dd/HH'/*.xml'"
prefix = "00"
format = "xml"
file_tag = "pos_records"
options = { record_path = "records.record", force_list = ["record", "tender"] }

[load_operations]
pos_tenders_xml = [{ type = "sql", sql-query = "pos_tenders", sql-files = [{ file = "pos_records" }] }]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for rel in (
        "config/streams/pos-records.toml",
        "config/couriers/pos_tenders.toml",
        "feeds/pos_tenders.toml",
        "queries/pos_tenders.sql",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, root / rel)
    (root / "config" / "courier.toml").write_text('[project]\ntime_zone = "UTC"\n')
    return root


def land(root: Path, key: str, data: bytes) -> None:
    path = root / ".courier" / "landing" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def run(root: Path, courier: str = "pos_tenders") -> dict[str, Any]:
    ctx = Context(load_project(root))
    window = ctx.window(ctx.project.courier(courier), date="2026-11-22")
    return ctx.run(courier, window, NOW)


def sql(root: Path, query: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(root / ".courier" / "feeds.duckdb"), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


EXPECTED = [
    ("pos-0001", 1, "berlin-01", "2026-11-22 09:14:03+00", "23.40", "cash", "20.00"),
    ("pos-0001", 2, "berlin-01", "2026-11-22 09:14:03+00", "23.40", "card", "3.40"),
    ("pos-0002", 1, "berlin-01", "2026-11-22 09:20:41+00", "7.90", "card", "7.90"),
    ("pos-0003", 1, "hamburg-01", "2026-11-22 18:02:00+00", "5.00", "voucher", "5.00"),
]
FEED_ROWS = (
    "SELECT record_id, tender_idx, store, strftime(sold_at, '%Y-%m-%d %H:%M:%S+00'), "
    "CAST(total AS VARCHAR), tender_type, CAST(amount AS VARCHAR) FROM {feed} ORDER BY ALL"
)


@pytest.mark.slow
def test_pos_xml_landed_as_cbor_is_flattened_into_one_row_per_tender(project: Path) -> None:
    land(project, "pos-records/2026/11/22/09/part-w1-000000.cbor",
         cbor2.dumps(parse_xml(SAMPLE)))  # fmt: skip
    truncated = cbor2.dumps(parse_xml(SAMPLE))[:-10]
    land(project, "pos-records/2026/11/22/18/part-w1-000001.cbor",
         cbor2.dumps(parse_xml(ONE)) + truncated)  # fmt: skip
    result = run(project)
    assert result["status"] == "succeeded", result["error"]
    assert result["files"]["loaded"] == 2
    assert result["records"] == 3  # records (rows of the tag), not payloads
    assert result["feeds"]["pos_tenders"] == {"read": 4, "loaded": 4, "rejected": 0}
    assert result["quarantined"] == 1
    assert sql(project, FEED_ROWS.format(feed="pos_tenders")) == EXPECTED
    [(file, line, reason)] = sql(project, "SELECT file, line, reason FROM courier.quarantine")
    assert file == "pos-records/2026/11/22/18/part-w1-000001.cbor"
    assert line == 2 and "truncated" in reason
    assert run(project)["status"] == "skipped"  # exactly once per file


@pytest.mark.slow
def test_the_same_payloads_as_xml_files_give_the_same_feed(project: Path) -> None:
    (project / "config" / "couriers" / "pos_xml.toml").write_text(XML_COURIER)
    shutil.copyfile(
        project / "feeds" / "pos_tenders.toml", project / "feeds" / "pos_tenders_xml.toml"
    )
    land(project, "pos-records/2026/11/22/09/part-w1-000000.cbor",
         cbor2.dumps(parse_xml(SAMPLE)) + cbor2.dumps(parse_xml(ONE)))  # fmt: skip
    land(project, "pos-xml/2026/11/22/09/a.xml", SAMPLE)
    land(project, "pos-xml/2026/11/22/18/b.xml", ONE)
    land(project, "pos-xml/2026/11/22/19/c.xml", b"<records><record></records>")
    assert run(project)["status"] == "succeeded"
    result = run(project, "pos_xml")
    assert result["status"] == "succeeded", result["error"]
    assert result["quarantined"] == 1
    assert sql(project, FEED_ROWS.format(feed="pos_tenders_xml")) == EXPECTED
    assert sql(project, FEED_ROWS.format(feed="pos_tenders")) == EXPECTED
    assert sql(project, "SELECT file, line FROM courier.quarantine") == [
        ("pos-xml/2026/11/22/19/c.xml", 1)
    ]


def test_validate_names_the_courier_file_and_option(project: Path) -> None:
    path = project / "config" / "couriers" / "pos_tenders.toml"
    path.write_text(path.read_text().replace('record_path = "records.record"', "record_path = 5"))
    done = subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(project), "validate"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "pos_tenders.toml [options.record_path]" in done.stderr + done.stdout
    assert "dotted path" in done.stderr + done.stdout
