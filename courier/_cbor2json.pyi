def lines(
    buf: bytes,
    pos: int,
    max_depth: int,
    record_path: tuple[bytes, ...] = (),
    force_list: tuple[bytes, ...] = (),
    /,
) -> tuple[bytes, int, int, int, bool, set[str]]:
    """The records of the complete items of buf from pos as JSON lines: (json, pos after
    them, items, rows, whether the next item needs cbor2, the rows' top-level keys)."""
