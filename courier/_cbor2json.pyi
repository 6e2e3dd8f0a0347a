def lines(buf: bytes, pos: int, max_depth: int, /) -> tuple[bytes, int, int, bool]:
    """The complete top-level maps of buf from pos as JSON lines: (json, pos after them,
    how many, whether the next item needs cbor2)."""
