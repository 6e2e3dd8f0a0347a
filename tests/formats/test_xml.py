"""XML reader and the hardened parser: xmltodict trees, record_path, force_list, bad documents."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import xmltodict

from courier.formats.base import get_reader
from courier.formats.cbor import CborReader
from courier.formats.xml import XmlError, XmlReader, parse_xml
from tests.formats.helpers import cbor_seq, read_rows, write

POS = Path(__file__).resolve().parents[2] / "samples" / "pos-records.xml"

ONE_RECORD = b"""<?xml version="1.0"?>
<records><record id="7"><id>r1</id><total>1.50</total>
<tenders><tender><type>cash</type><amount>1.50</amount></tender></tenders></record></records>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<records><record><id>&lol9;</id></record></records>
"""


def test_registered_as_the_xml_reader() -> None:
    assert isinstance(get_reader("xml"), XmlReader)


def test_the_tree_is_xmltodicts() -> None:
    data = POS.read_bytes()
    assert parse_xml(data) == xmltodict.parse(data)
    assert parse_xml(data, force_list=["tender"]) == xmltodict.parse(data, force_list=["tender"])
    assert parse_xml(ONE_RECORD)["records"]["record"]["@id"] == "7"


def test_record_path_and_force_list_give_one_row_per_record(tmp_path: Path) -> None:
    f = write(tmp_path / "pos.xml", POS.read_bytes())
    rows, bad = read_rows(
        XmlReader(), [f], record_path="records.record", force_list=["record", "tender"]
    )
    assert bad == []
    assert [r["id"] for r in rows] == ["pos-0001", "pos-0002"]
    assert rows[1]["tenders"] == {"tender": [{"type": "card", "amount": "7.90"}]}
    single = write(tmp_path / "one.xml", ONE_RECORD)
    rows, _ = read_rows(XmlReader(), [single], record_path="records.record", force_list=["tender"])
    assert rows == [
        {
            "@id": "7",
            "id": "r1",
            "total": "1.50",
            "tenders": {"tender": [{"type": "cash", "amount": "1.50"}]},
        }
    ]


def test_without_record_path_the_document_is_one_row(tmp_path: Path) -> None:
    rows, bad = read_rows(XmlReader(), [write(tmp_path / "one.xml", ONE_RECORD)])
    assert bad == [] and len(rows) == 1 and list(rows[0]) == ["records"]


def test_cbor_items_of_landed_xml_give_the_same_rows(tmp_path: Path) -> None:
    """The ingest API lands each XML payload's xmltodict tree as a CBOR item: the CBOR reader
    with the same options gives exactly the XML reader's rows."""
    payloads = [POS.read_bytes(), ONE_RECORD]
    options = {"record_path": "records.record", "force_list": ["record", "tender"]}
    xml_files = [write(tmp_path / f"{i}.xml", p) for i, p in enumerate(payloads)]
    landed = write(tmp_path / "part.cbor", cbor_seq([parse_xml(p) for p in payloads]))
    xml_rows, _ = read_rows(XmlReader(), xml_files, **options)
    cbor_rows, _ = read_rows(CborReader(), [landed], **options)
    assert cbor_rows == xml_rows
    assert len(xml_rows) == 3


@pytest.mark.parametrize(
    ("document", "line", "words"),
    [
        (b"<records><record></records>", 1, "mismatched tag"),
        (b"<records>\n<record>\n</record>\n", 4, "no element found"),
        (b"<a>\xff\xfe</a>", 1, "not well-formed"),
        (b"just text", 1, "syntax error"),
    ],
)
def test_invalid_document_is_one_bad_record_with_its_line(
    tmp_path: Path, document: bytes, line: int, words: str
) -> None:
    f = write(tmp_path / "bad.xml", document)
    rows, bad = read_rows(XmlReader(), [f], record_path="records.record")
    assert rows == []
    [record] = bad
    assert record.file == "landing/bad.xml"
    assert record.line == line
    assert words in record.reason
    assert record.raw.startswith(document[:5].decode("utf-8", errors="backslashreplace"))


def test_entity_expansion_bomb_is_refused_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(XmlError, match="entity"):
        parse_xml(BILLION_LAUGHS)
    rows, bad = read_rows(XmlReader(), [write(tmp_path / "bomb.xml", BILLION_LAUGHS)])
    assert rows == [] and len(bad) == 1 and "entit" in bad[0].reason
    assert time.monotonic() - started < 2


def test_external_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    for document in (
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>'.encode(),
        f'<!DOCTYPE r SYSTEM "file://{secret}"><r>&x;</r>'.encode(),
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{secret}"> %p;]><r/>'.encode(),
    ):
        with pytest.raises(XmlError) as caught:
            parse_xml(document)
        assert "TOP-SECRET" not in str(caught.value)


def test_depth_is_bounded(tmp_path: Path) -> None:
    deep = b"<a>" * 60 + b"x" + b"</a>" * 60
    assert parse_xml(deep, max_depth=60)
    with pytest.raises(XmlError, match="deeper than 50"):
        parse_xml(deep, max_depth=50)
    rows, bad = read_rows(XmlReader(), [write(tmp_path / "deep.xml", deep)], max_depth=50)
    assert rows == [] and "max_depth" in bad[0].reason


def test_document_size_is_bounded(tmp_path: Path) -> None:
    f = write(tmp_path / "big.xml", b"<a>" + b"x" * 2000 + b"</a>")
    rows, bad = read_rows(XmlReader(), [f], max_document_bytes=1000)
    assert rows == [] and "max_document_bytes" in bad[0].reason


def test_empty_file_has_no_rows(tmp_path: Path) -> None:
    assert read_rows(XmlReader(), [write(tmp_path / "e.xml", b"")]) == ([], [])
    assert read_rows(XmlReader(), [write(tmp_path / "w.xml", b"\n  \n")]) == ([], [])


def test_missing_record_path_is_a_bad_record_not_silence(tmp_path: Path) -> None:
    f = write(tmp_path / "one.xml", ONE_RECORD)
    rows, bad = read_rows(XmlReader(), [f], record_path="records.row")
    assert rows == []
    assert "no key 'row'" in bad[0].reason and "options.record_path" in bad[0].reason
