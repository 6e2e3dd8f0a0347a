"""`courier query test`: query tests from queries/tests/*.toml, their failures and bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from courier.analyst.querytest import load_test, run_tests
from courier.errors import ConfigError
from courier.validate import load_project
from tests.analyst.helpers import courier
from tests.projects import ProjectFactory

REPO = Path(__file__).resolve().parents[2]

PASSING = """
query = "order_items"

[inputs]
events = { json = '''
{"event_id": "e1", "customer": {"id": 7}, "items": [{"sku": "a", "qty": 2, "price": 1.5}, {"sku": "b", "qty": 1, "price": 2}]}
''' }

[[expected]]
event_id = "e1"
item_idx = 1
customer_id = 7
sku = "a"
price = 1.50

[[expected]]
item_idx = 2
sku = "b"
"""


def test_the_repository_example_query_tests_pass() -> None:
    outcomes = run_tests(load_project(REPO))
    assert len(outcomes) >= 10
    failed = {str(o.path.name): (o.error, o.problems) for o in outcomes if not o.passed}
    assert failed == {}


def test_failure_names_query_row_column_expected_and_actual(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.write("queries/tests/order_items.toml", PASSING.replace('sku = "b"', 'sku = "c"'))
    result = courier(p, "query", "test")
    assert result.returncode == 1
    out = result.stdout
    assert (
        "FAIL  queries/tests/order_items.toml: query order_items (queries/order_items.sql)" in out
    )
    assert 'row 2, column sku: expected "c", actual "b"' in out
    assert "0 passed, 1 failed" in out
    assert "Traceback" not in result.stderr


def test_passing_and_selected_by_query_name(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.write("queries/tests/first.toml", PASSING)
    p.write("queries/tests/second.toml", PASSING)
    result = courier(p, "query", "test", "order_items")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 0 failed" in result.stdout
    assert [o.path.name for o in run_tests(p.load(), "first")] == ["first.toml"]
    with pytest.raises(ConfigError, match="no query test named 'nothing'"):
        run_tests(p.load(), "nothing")


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ("events = {", "inputs.web", "'web' is not a file tag of a load operation running query"),
        ("{ json = ", "inputs.events", "an input is one of"),
        ('query = "order_items"', "query", "no saved query 'missing'"),
        ("[[expected]]\nevent_id", "expected", "list the expected rows"),
    ],
)
def test_bad_test_files_name_the_file_and_key(
    make_project: ProjectFactory, change: str, key: str, message: str
) -> None:
    p = make_project.events_project()
    text = {
        "events = {": PASSING.replace("events = {", "web = {"),
        "{ json = ": PASSING.replace("{ json = ", "{ yaml = "),
        'query = "order_items"': PASSING.replace('query = "order_items"', 'query = "missing"'),
        "[[expected]]\nevent_id": PASSING.split("[[expected]]")[0],
    }[change]
    path = p.write("queries/tests/t.toml", text)
    with pytest.raises(ConfigError) as info:
        load_test(p.load(), path)
    assert info.value.location == path and info.value.key == key
    assert message in str(info.value)
    if key == "inputs.web":
        assert "events gives events" in str(info.value)


def test_malformed_json_input_names_the_line(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    broken = PASSING.replace(
        '{"event_id": "e1"', '{"event_id": "e0", "items": []}\n{"event_id": "e1",'
    )
    p.write("queries/tests/t.toml", broken)
    (outcome,) = run_tests(p.load())
    assert outcome.error is not None  # line 2 of the input text
    assert "t.toml [inputs.events] line 2: malformed JSON" in outcome.error


@pytest.mark.parametrize(
    ("sql", "line", "needle"),
    [
        ("SELECT\n    e.event_id,\n    e.no_such_field\nFROM events e\n", 3, "no_such_field"),
        ("\n\nSELECT event_id\nFROM event\n", 4, "Table with name event does not exist"),
        ("SELECT event_id,\nFROM events WHERE WHERE\n", 2, "syntax error"),
        ("SELECT e.customer.nope\nFROM events e\n", 1, 'key "nope"'),
    ],
)
def test_query_errors_point_at_file_line_and_columns(
    make_project: ProjectFactory, sql: str, line: int, needle: str
) -> None:
    p = make_project.events_project()
    (p.root / "queries" / "order_items.sql").write_text(sql)  # leading blank lines kept
    p.write("queries/tests/t.toml", PASSING)
    (outcome,) = run_tests(p.load())
    error = outcome.error or ""
    assert "queries/order_items.sql" in error
    assert f"line {line}: " in error
    assert needle in error
    assert "events: event_id, customer, items" in error  # the columns it could use


POS_COURIER = """
storage = "landing"
file_pattern = "'pos/'yyyy/MM/dd/HH'/*.{ext}'"
prefix = "00"
format = "{fmt}"
file_tag = "pos"
options = {{ record_path = "records.record", force_list = ["record", "tender"] }}

[load_operations]
tenders = [{{ type = "sql", sql-query = "tenders", sql-files = [{{ file = "pos" }}] }}]
"""

POS_TEST = """
query = "tenders"

[inputs]
pos = { xml = ['''
<records><record id="r1"><total>9.50</total>
  <tenders><tender><type>cash</type><amount>9.50</amount></tender></tenders>
</record></records>''', '''
<records>
  <record id="r2"><total>5</total><tenders>
    <tender><type>card</type><amount>3</amount></tender>
    <tender><type>cash</type><amount>2</amount></tender>
  </tenders></record>
  <record id="r3"><total>1</total><tenders><tender><type>card</type><amount>1</amount></tender></tenders></record>
</records>'''] }

[[expected]]
record_id = "r1"
tender_idx = 1
type = "cash"
amount = 9.5

[[expected]]
record_id = "r2"
tender_idx = 1
type = "card"

[[expected]]
record_id = "r2"
tender_idx = 2
amount = "2"

[[expected]]
record_id = "r3"
type = "card"
"""


@pytest.mark.parametrize(("fmt", "ext"), [("cbor", "cbor"), ("xml", "xml")])
def test_xml_inputs_land_as_the_courier_reads_them(
    make_project: ProjectFactory, fmt: str, ext: str
) -> None:
    """XML payloads go through the courier's reader with its record_path and force_list: one
    record per <record>, tenders a list even when there is one."""
    p = make_project
    p.courier("pos", POS_COURIER.format(fmt=fmt, ext=ext))
    p.feed("tenders", '[fields]\nrecord_id = "string"\n')
    p.query(
        "tenders",
        """
        SELECT r."@id" AS record_id, t.tender_idx, t.tender.type AS type,
               t.tender.amount AS amount
        FROM pos AS r,
             LATERAL (SELECT unnest(r.tenders.tender) AS tender,
                             generate_subscripts(r.tenders.tender, 1) AS tender_idx) AS t
        """,
    )
    p.write("queries/tests/tenders.toml", POS_TEST)
    outcomes = run_tests(p.load())
    assert [(o.error, o.problems) for o in outcomes] == [(None, [])]
    assert outcomes[0].rows == 4


def test_unsafe_xml_input_is_refused(make_project: ProjectFactory) -> None:
    p = make_project
    p.courier("pos", POS_COURIER.format(fmt="cbor", ext="cbor"))
    p.feed("tenders", '[fields]\nrecord_id = "string"\n')
    p.query("tenders", "SELECT 1 AS record_id FROM pos")
    bomb = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><records>&a;</records>'
    p.write(
        "queries/tests/t.toml",
        f"query = \"tenders\"\nexpected = []\n[inputs]\npos = {{ xml = '{bomb}' }}\n",
    )
    (outcome,) = run_tests(p.load())
    assert outcome.error is not None and "[inputs.pos]" in outcome.error
    assert "entity" in outcome.error.lower() or "doctype" in outcome.error.lower()
