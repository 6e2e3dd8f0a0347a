"""Engine type names -> schema trees."""

from __future__ import annotations

import pytest

from courier.analyst.schema import parse_schema, parse_type, schema_lines


def test_scalars_lists_structs_maps_round_trip() -> None:
    for text in [
        "VARCHAR",
        "BIGINT[]",
        "DECIMAL(12,2)",
        "TIMESTAMP WITH TIME ZONE",
        'STRUCT(id BIGINT, "a b" VARCHAR, tags VARCHAR[])',
        "STRUCT(items STRUCT(sku VARCHAR, qty BIGINT)[], m MAP(VARCHAR, BIGINT))",
        "MAP(VARCHAR, STRUCT(x DOUBLE))",
    ]:
        assert parse_type(text).sql() == text


def test_fixed_arrays_quoted_names_and_enums() -> None:
    node = parse_type("STRUCT(\"we\"\"ird\" INTEGER[3], e ENUM('a', 'b,c'))")
    assert [n for n, _ in node.fields] == ['we"ird', "e"]
    assert node.fields[0][1].kind == "list"
    assert node.fields[1][1].name.startswith("ENUM(")


def test_key_value_lists_are_recognised() -> None:
    kv = parse_type("STRUCT(name VARCHAR, value VARCHAR, type VARCHAR)[]")
    assert kv.kv_fields() == ("name", "value", "type")
    assert parse_type("STRUCT(Key VARCHAR, Value JSON)[]").kv_fields() == ("Key", "Value", None)
    assert parse_type("STRUCT(name VARCHAR, qty BIGINT)[]").kv_fields() is None
    assert parse_type("VARCHAR[]").kv_fields() is None


def test_schema_lines_walk_into_lists_of_structs() -> None:
    root = parse_schema({"a": "STRUCT(b STRUCT(c BIGINT)[])", "d": "VARCHAR"})
    assert [(line.path, line.depth, line.type) for line in schema_lines(root)] == [
        ("a", 0, "STRUCT"),
        ("a.b", 1, "STRUCT[]"),
        ("a.b[].c", 2, "BIGINT"),
        ("d", 0, "VARCHAR"),
    ]


def test_unreadable_type_names_the_position() -> None:
    with pytest.raises(ValueError, match="cannot read type"):
        parse_type("STRUCT(a BIGINT")
