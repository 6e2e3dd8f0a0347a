"""Request bodies -> records: JSON rules, hardened XML, CBOR items."""

from __future__ import annotations

import cbor2
import orjson
import pytest
import xmltodict

from courier.errors import IngestError
from courier.ingest.payloads import json_records, records, split_lines, split_xml, xml_record


def refused(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(IngestError) as info:
        fn(*args, **kw)
    assert info.value.status == 400
    return str(info.value)


def test_json_object_becomes_one_compact_line() -> None:
    body = b'{\n  "a": 1,\n  "nested": {"b": [1, 2, {"c": "x\\ny"}]},\n  "s": "\xc3\xa9"\n}\n'
    (line,) = json_records(body)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line == b'{"a":1,"nested":{"b":[1,2,{"c":"x\\ny"}]},"s":"\xc3\xa9"}\n'
    assert orjson.loads(line) == orjson.loads(body)


def test_json_big_integers_stay_exact() -> None:
    (line,) = json_records(b'{"n": 123456789012345678901234567890, "m": -1}')
    assert line == b'{"n":123456789012345678901234567890,"m":-1}\n'
    (line,) = json_records(b'{"ts": "20261122073000123456789"}')  # digits in a string: fine
    assert line == b'{"ts":"20261122073000123456789"}\n'


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"a": 1}\n{"a": 2}\n', "more than one JSON value"),
        (b'{"a": 1} {"a": 2}', "more than one JSON value"),
        (b'[{"a": 1}]', "JSON array where one object is expected"),
        (b'"text"', "got a string"),
        (b"42", "got a number"),
        (b"null", "got a null"),
        (b'{"a": ', "invalid JSON"),
        (b'{"a": NaN}', "invalid JSON"),
        (b'{"a": "\xff\xfe"}', "UTF-8"),
        (b"   ", "empty body"),
    ],
)
def test_json_refusals(body: bytes, needle: str) -> None:
    assert needle in refused(json_records, body)


def test_batch_arrays_all_or_none() -> None:
    lines = json_records(b'[{"a": 1}, {"a": 2}, {"a": 3}]', batch_arrays=True)
    assert lines == [b'{"a":1}\n', b'{"a":2}\n', b'{"a":3}\n']
    assert "element 1" in refused(json_records, b'[{"a": 1}, 2, {"a": 3}]', batch_arrays=True)
    assert "empty JSON array" in refused(json_records, b"[]", batch_arrays=True)
    assert json_records(b'{"a": 1}', batch_arrays=True) == [b'{"a":1}\n']


POS = b"""<?xml version="1.0" encoding="UTF-8"?>
<records>
  <record id="r1"><total>23.40</total>
    <tenders><tender><type>cash</type></tender><tender><type>card</type></tender></tenders>
  </record>
  <record id="r2"><total>7.90</total><tenders><tender><type>card</type></tender></tenders></record>
</records>"""


def test_xml_becomes_one_cbor_item_with_xmltodict_semantics() -> None:
    item = xml_record(POS)
    assert cbor2.loads(item) == xmltodict.parse(POS)
    tree = cbor2.loads(item)
    assert tree["records"]["record"][0]["@id"] == "r1"
    assert tree["records"]["record"][0]["tenders"]["tender"][1]["type"] == "card"
    assert records("xml", POS) == [item]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<lolz>&lol9;</lolz>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<foo>&xxe;</foo>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE foo SYSTEM "http://127.0.0.1:9/evil.dtd"><foo>&xxe;</foo>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><foo/>"""


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (BILLION_LAUGHS, "DOCTYPE"),
        (EXTERNAL_ENTITY, "DOCTYPE"),
        (EXTERNAL_DTD, "DOCTYPE"),
        (PARAMETER_ENTITY, "DOCTYPE"),
        (b"<a>" * 65 + b"</a>" * 65, "deeper than 64"),
        (b"<a><b></a>", "not well formed"),
        (b"<a>\xff\xfe</a>", "not well formed"),
        (b"<a>&undefined;</a>", "not well formed"),
        (b"<a/><b/>", "not well formed"),
        (b"not xml", "not well formed"),
        (b"", "empty body"),
    ],
)
def test_xml_refusals(body: bytes, needle: str) -> None:
    message = refused(xml_record, body)
    assert needle in message
    assert "root:" not in message  # nothing of /etc/passwd leaks back


def test_xml_depth_is_configurable_and_counts_correctly() -> None:
    ok = b"<a>" * 64 + b"</a>" * 64
    assert cbor2.loads(xml_record(ok))
    siblings = b"<r>" + b"<x><y/></x>" * 500 + b"</r>"  # wide, not deep
    assert len(cbor2.loads(xml_record(siblings, max_depth=3))["r"]["x"]) == 500
    assert "deeper than 2" in refused(xml_record, b"<a><b><c/></b></a>", max_depth=2)


def test_split_helpers() -> None:
    items = [cbor2.loads(i) for i in split_xml(POS)]
    assert [i["record"]["@id"] for i in items] == ["r1", "r2"]
    assert "no child elements" in refused(split_xml, b"<records/>")
    assert list(split_lines(b'{"a":1}\n\n{"a":2}\n')) == [(1, b'{"a":1}'), (3, b'{"a":2}')]
