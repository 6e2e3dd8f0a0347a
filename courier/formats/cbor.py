"""CBOR reader: a CBOR sequence (RFC 8742, items back to back, as the ingest API lands XML
payloads), or a file holding one top-level array whose elements are the items.

Items are decoded by cbor2 from an in-memory chunk of the file (CHUNK bytes, grown when one
item is larger), so memory follows the chunk and the batch, never the file or the window.

Bad input, each a BadRecord numbered like the items around it:
- an item cbor2 cannot decode (invalid UTF-8, nesting deeper than options.max_depth, a bad
  tag content) but whose extent the CBOR structure still gives: that item; reading resumes
  right after it;
- an item that is not a map (or, with options.record_path, has no records there);
- a truncated item (the file ends inside it) or a structurally broken one (reserved header
  values, a stray break): the rest of the file is one bad record, since nothing in CBOR marks
  where the next item would start.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import IO, Any

import cbor2

from courier.formats.arrow_tree import Item, TreeReader, write_entries
from courier.formats.options import TreeOptions
from courier.plan import BadRecord, InputFile

transcode_lines: (
    Callable[
        [bytes, int, int, tuple[bytes, ...], tuple[bytes, ...]],
        tuple[bytes, int, int, int, bool, set[str]],
    ]
    | None
)
try:  # the compiled CBOR -> JSON lines transcoder (courier/_cbor2json.c), when it was built
    from courier._cbor2json import lines as transcode_lines
except ImportError:  # pragma: no cover - an install without a C compiler
    transcode_lines = None

CHUNK = 8 << 20  # bytes of the file decoded from memory at a time
MAX_NAMES = 32  # record_path steps and force_list keys the compiled transcoder takes
RAW_BYTES = 256  # bytes of a bad item kept (as hex) in quarantine
STRUCTURE_DEPTH = 10_000  # nesting the structural scan follows before calling an item broken


class CborReader(TreeReader):
    format = "cbor"

    def items(self, file: InputFile, options: TreeOptions) -> Iterator[Item | BadRecord]:
        with open(file.path, "rb") as fh:
            yield from _Sequence(fh, file.key, options).items()

    def write_lines(
        self,
        file: InputFile,
        options: TreeOptions,
        out: IO[bytes],
        bad: list[BadRecord],
        keys: set[str] | None = None,
    ) -> int:
        """Items go through the compiled transcoder, JSON text straight from the CBOR bytes
        (record_path and force_list applied as below); an item it does not handle (tags,
        byte strings, bad or truncated items) is decoded by cbor2 as in `items`, then the
        transcoder goes on after it."""
        transcode = transcode_lines
        path = tuple(step.encode() for step in options.record_path)
        force = tuple(sorted(k.encode() for k in options.force_list))
        if transcode is None or len(path) > MAX_NAMES or len(force) > MAX_NAMES:
            return super().write_lines(file, options, out, bad, keys)
        depth, key = options.max_depth, file.key
        written = number = 0
        with open(file.path, "rb") as fh:
            seq = _Sequence(fh, key, options)
            if not seq.more():
                return 0
            if seq.buf[0] >> 5 == 4:  # one top-level array: cbor2 walks it
                return write_entries(seq.items(), options.record_path, key, out, bad, keys)
            while True:
                json, seq.pos, items, rows, slow, names = transcode(
                    seq.buf, seq.pos, depth, path, force
                )
                if rows:
                    out.write(json)
                    written += rows
                    if keys is not None:
                        keys |= names
                number += items
                if slow:
                    entry = next(seq.items(after=number), None)
                    if entry is None:
                        break
                    number += 1  # one item (or one bad record), numbered like the rest
                    written += write_entries((entry,), options.record_path, key, out, bad, keys)
                elif not seq.more():  # the end of the file, or of what it holds whole
                    rest = seq.items(after=number)
                    written += write_entries(rest, options.record_path, key, out, bad, keys)
                    break
        return written


def force_list_hook(keys: frozenset[str]) -> Callable[[Any, Any], Any]:
    """A cbor2 object_hook applying xmltodict's force_list to every decoded map. cbor2 6 calls
    it with (map, immutable), cbor2 5 with (decoder, map)."""
    wanted = tuple(keys)

    def hook(first: Any, second: Any) -> Any:
        value = first if type(first) is dict else second
        if type(value) is dict:
            for k in wanted:
                if k in value:
                    v = value[k]
                    if type(v) is not list:
                        value[k] = [v]
        return value if value is first or value is second else first

    return hook


class _Sequence:
    """The decoding state of one file: a buffer of its bytes and the position in it."""

    def __init__(self, fh: IO[bytes], key: str, options: TreeOptions):
        self.fh = fh
        self.key = key
        self.buf = b""
        self.pos = 0  # next unread byte in buf
        self.base = 0  # file offset of buf[0]
        self.eof = False
        self.decoder_options: dict[str, Any] = {"max_depth": options.max_depth}
        if options.force_list:
            self.decoder_options["object_hook"] = force_list_hook(options.force_list)

    # -- buffer ---------------------------------------------------------------------------------
    def more(self) -> bool:
        """Read more of the file, keeping the unread bytes; False at the end of the file."""
        if self.eof:
            return False
        keep = self.buf[self.pos :]
        data = self.fh.read(max(CHUNK, len(keep)))
        if not data:
            self.eof = True
            return False
        self.base += self.pos
        self.buf = keep + data
        self.pos = 0
        return True

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def bad(self, number: int, reason: str, end: int | None = None) -> BadRecord:
        stop = self.pos + RAW_BYTES if end is None else min(end, self.pos + RAW_BYTES)
        return BadRecord(self.key, number, reason, self.buf[self.pos : stop].hex())

    def rest_is_bad(self, number: int, why: str) -> BadRecord:
        offset = self.offset
        excerpt = self.buf[self.pos : self.pos + RAW_BYTES].hex()
        left = len(self.buf) - self.pos
        self.pos = len(self.buf)
        while self.more():  # count what is left without keeping it
            left += len(self.buf) - self.pos
            self.pos = len(self.buf)
        return BadRecord(
            self.key,
            number,
            f"item {number} at byte {offset}: {why}; the rest of the file ({left} bytes) cannot "
            "be split into items and is quarantined whole",
            excerpt,
        )

    # -- items --------------------------------------------------------------------------------
    def items(self, after: int = 0) -> Iterator[Item | BadRecord]:
        """The items from the current position, numbered from after + 1."""
        number = after
        in_array: int | None = None  # items left in a top-level array; -1: until a break
        decoder: cbor2.CBORDecoder | None = None
        stream = io.BytesIO()
        while True:
            if self.pos >= len(self.buf) and not self.more():
                break
            if decoder is None:
                stream = io.BytesIO(self.buf)
                stream.seek(self.pos)
                decoder = cbor2.CBORDecoder(stream, **self.decoder_options)
            start = self.pos
            if self.offset == 0 and self.buf[0] >> 5 == 4:  # one top-level array: its elements
                try:
                    count, length = head(self.buf, 0)
                except _Incomplete:
                    if self.more():
                        decoder = None
                        continue
                    yield self.truncated(1, 0)
                    return
                except _Malformed as broken:  # e.g. 0x9c: an array head with a reserved length
                    yield self.rest_is_bad(1, f"broken CBOR ({broken})")
                    return
                in_array = -1 if count is None else count
                self.pos = length
                decoder = None
                if in_array == 0:
                    in_array = None
                continue
            if in_array == -1 and self.buf[start] == 0xFF:  # the break ending the array
                self.pos += 1
                decoder = None
                in_array = None
                continue
            try:
                value = decoder.decode()
            except cbor2.CBORDecodeEOF:
                if self.more():
                    decoder = None
                    continue
                number += 1
                yield self.truncated(number, start)
                return
            except (
                cbor2.CBORDecodeError,
                ValueError,
                TypeError,
                OverflowError,
                RecursionError,
            ) as exc:
                try:
                    end = item_end(self.buf, start)
                except _Incomplete:
                    if self.more():
                        decoder = None
                        continue
                    number += 1
                    yield self.truncated(number, start)
                    return
                except _Malformed as broken:
                    number += 1
                    self.pos = start
                    yield self.rest_is_bad(number, f"broken CBOR ({broken}; cbor2: {exc})")
                    return
                number += 1
                self.pos = start
                cause = f" ({exc.__cause__})" if exc.__cause__ else ""
                record = self.bad(
                    number,
                    f"item {number} at byte {self.offset} cannot be decoded: {exc}{cause}",
                    end,
                )
                self.pos = end  # before the yield: a caller taking one item resumes here
                decoder = None
                yield record
            else:
                number += 1
                self.pos = stream.tell()
                yield number, value
            if in_array is not None and in_array > 0:
                in_array -= 1
                if in_array == 0:
                    in_array = None
        if in_array is not None:
            number += 1
            yield BadRecord(
                self.key,
                number,
                "the file ends inside its top-level array (the writer stopped early): "
                f"the array's end is missing after item {number - 1}",
                "",
            )

    def truncated(self, number: int, start: int) -> BadRecord:
        self.pos = start
        left = len(self.buf) - start
        record = self.bad(
            number,
            f"item {number} at byte {self.offset} is truncated: the file ends inside it "
            f"({left} bytes of it present); quarantined whole",
        )
        self.pos = len(self.buf)
        return record


# -- CBOR structure (RFC 8949 section 3), only walked for items cbor2 refused ------------------
class _Incomplete(Exception):
    """The item runs past the end of the buffer."""


class _Malformed(Exception):
    """The bytes are not well-formed CBOR: no way to tell where the item ends."""


def head(buf: bytes, pos: int) -> tuple[int | None, int]:
    """(argument or None for indefinite length, offset after the head) of the head at pos."""
    if pos >= len(buf):
        raise _Incomplete
    initial = buf[pos]
    info = initial & 0x1F
    if info < 24:
        return info, pos + 1
    if info <= 27:
        size = 1 << (info - 24)
        if pos + 1 + size > len(buf):
            raise _Incomplete
        return int.from_bytes(buf[pos + 1 : pos + 1 + size], "big"), pos + 1 + size
    if info == 31:
        return None, pos + 1
    raise _Malformed(f"reserved additional information {info} in byte 0x{initial:02x}")


def item_end(buf: bytes, pos: int) -> int:
    """Offset just after the well-formed item starting at pos (its content unchecked)."""
    owed: list[int] = []  # per open container, the items it still holds; -1: until a break
    while True:
        if pos >= len(buf):
            raise _Incomplete
        initial = buf[pos]
        if initial == 0xFF:
            if not owed or owed[-1] != -1:
                raise _Malformed("a break byte outside an indefinite-length item")
            pos += 1
            owed.pop()
        else:
            major = initial >> 5
            argument, pos = head(buf, pos)
            if argument is None and major in (0, 1, 6, 7):
                raise _Malformed(f"indefinite length on major type {major}")
            if major in (2, 3):
                if argument is None:
                    pos = _indefinite_string(buf, pos, major)
                elif pos + argument > len(buf):
                    raise _Incomplete
                else:
                    pos += argument
            elif major in (4, 5, 6):
                if major == 6:
                    children = 1
                elif argument is None:
                    children = -1
                else:
                    children = argument * (2 if major == 5 else 1)
                if children:
                    if len(owed) >= STRUCTURE_DEPTH:
                        raise _Malformed(f"nesting deeper than {STRUCTURE_DEPTH}")
                    owed.append(children)
                    continue
        # An item just ended: it counts for its container, which may end with it, and so on.
        while owed and owed[-1] != -1:
            owed[-1] -= 1
            if owed[-1]:
                break
            owed.pop()
        if not owed:
            return pos


def _indefinite_string(buf: bytes, pos: int, major: int) -> int:
    while True:
        if pos >= len(buf):
            raise _Incomplete
        if buf[pos] == 0xFF:
            return pos + 1
        if buf[pos] >> 5 != major:
            raise _Malformed("an indefinite-length string holds a chunk of another type")
        length, pos = head(buf, pos)
        if length is None:
            raise _Malformed("an indefinite-length string chunk of indefinite length")
        pos += length
        if pos > len(buf):
            raise _Incomplete
