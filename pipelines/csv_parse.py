"""Parsing landing files against the config schema, one file at a time (runs inside Beam workers).

Called by pipelines/ingest.py. Every row becomes either a typed tf.Example routed to its split, or
a malformed record saying exactly what was wrong (file, line, reason, a sample of the text), so
the validation gate can reject the snapshot with a message a data engineer understands.
"""

from __future__ import annotations

import csv
import errno
import functools
import hashlib
import io
import json
import math
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.config import PipelineConfig

# (kind, file uri, label, payload, row hash): kind "row" with a serialized tf.Example, or
# "malformed" with a JSON line {"file", "line", "reason", "text"}. ``label`` is the row's class as a
# string (classification) or its target value (regression): what ingest stratifies the split by.
# A third kind, "file", closes each file: JSON {"uri", "size", "sha256"} of the bytes parsed.
Record = tuple[str, str, str | float, bytes | str, float]
ROW = "row"
MALFORMED = "malformed"
FILE = "file"
SAMPLE_CHARS = 200
READ_CHUNK = 1 << 20
NUL_PROBE = 65536  # a NUL byte in the first 64 KiB: a binary file, not CSV text


# -- tf.Example in protobuf's wire format -----------------------------------------------------
# Example{features: 1} > Features{feature: 1, map<string, Feature>} > entry{key: 1, value: 2} >
# Feature{bytes_list: 1 | float_list: 2 | int64_list: 3} > *List{value: 1} (numbers packed).
# Map entries in the order given (column order): deterministic, where protobuf's own serializer
# writes a map in its hash table's order.
BYTES, FLOAT, INT64 = 1, 2, 3
_PACK_FLOAT = struct.Struct("<f").pack
_SMALL = [bytes((i,)) for i in range(0x80)]  # one-byte varints


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)  # inlined one-byte case: called ~60 times a row
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _float32(x: float) -> bytes:
    try:
        return _PACK_FLOAT(x)
    except OverflowError:  # past float32's range: protobuf stores an infinity, so do we
        return _PACK_FLOAT(math.copysign(math.inf, x))


@functools.lru_cache(maxsize=4096)
def _key(name: str) -> bytes:
    return _field(b"\x0a", name.encode())  # a map entry's key field


def example_bytes(entries: list[tuple[str, int, Any]]) -> bytes:
    """A serialized tf.Example of one-value features ``(name, BYTES | FLOAT | INT64, value)``.

    Parses to the same Example as ``tf.train.Example(...).SerializeToString()`` of the same
    features (tests/data/test_example_bytes.py); ints must already be in int64's range.
    """
    features = []
    for name, kind, value in entries:
        if kind == BYTES:
            feature = _field(b"\x0a", _field(b"\x0a", value))
        elif kind == FLOAT:
            feature = b"\x12\x06\x0a\x04" + _float32(value)
        else:
            feature = _field(b"\x1a", _field(b"\x0a", _varint(value & 0xFFFFFFFFFFFFFFFF)))
        features.append(_field(b"\x0a", _key(name) + _field(b"\x12", feature)))
    return _field(b"\x0a", b"".join(features))


class NotRegular(Exception):
    """The path is not a regular file (a FIFO, device, socket, folder, or a symbolic link)."""


class TooLarge(Exception):
    """The file grew past ``source.max_file_bytes`` while it was read."""


def open_regular(uri: str):
    """Opens a landing file for reading, refusing anything but a regular file without reading it.

    A local path is opened without following a final symbolic link and without blocking (a FIFO
    would wait for a writer forever), and the opened file is checked with fstat, so what is read is
    what was checked. Other URIs (object stores) go through Beam's file systems.
    """
    if "://" in uri and not uri.startswith("file://"):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.open(uri, compression_type="uncompressed")
    path = uri.removeprefix("file://")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegular("a symbolic link: refused (only regular files are ingested)") from None
        raise NotRegular(f"cannot be opened: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotRegular(f"not a regular file ({file_kind(info.st_mode)}): refused unread")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb", buffering=0)


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


class HashingStream(io.RawIOBase):
    """A read-only stream over ``f`` that hashes and counts every byte read through it."""

    def __init__(self, f, max_bytes: int | None = None):
        super().__init__()
        self.f, self.max_bytes = f, max_bytes
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.f.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha.update(data)
        self.size += n
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise TooLarge
        return n

    def drain(self) -> None:
        """Reads (and hashes) what the parser left unread, so the hash covers the whole file."""
        chunk = bytearray(READ_CHUNK)
        while self.readinto(chunk):
            pass


@dataclass(frozen=True)
class RowParser:
    columns: tuple[tuple[str, str], ...]  # (name, type) in schema order
    header: bool
    delimiter: str
    fmt: str
    missing_marker: str
    label: str
    classes: tuple[str, ...] | None  # classification: every class, as text; None: regression
    classes_shown: str  # the classes as the config writes them, for messages
    nullable: frozenset[str]
    row_key: tuple[str, ...]
    salt: str
    max_bytes: int | None = None  # source.max_file_bytes
    # False: check every row exactly as for ingest but build no tf.Example (the payload is b""):
    # ingest's first pass, which only needs each valid row's label and hash (see ingest.run_beam).
    build_examples: bool = True

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> RowParser:
        classes = cfg.label.classes
        return cls(
            columns=tuple((c.name, c.type) for c in cfg.columns),
            header=cfg.source.header, delimiter=cfg.source.delimiter, fmt=cfg.source.format,
            missing_marker=cfg.source.missing_marker, label=cfg.label.column,
            classes=None if classes is None else tuple(str(c) for c in classes),
            classes_shown=str(classes),
            nullable=frozenset(c.name for c in cfg.columns if c.nullable),
            row_key=tuple(cfg.row_key), salt=cfg.split.salt,
            max_bytes=cfg.source.max_file_bytes,
        )

    # -- routing -----------------------------------------------------------------------------
    def row_hash(self, values: dict[str, str]) -> float:
        """A salted sha256 of the row key in [0, 1): the same on every run and every runner."""
        names = self.row_key or tuple(n for n, _ in self.columns)
        key = "\x1f".join(values[n] for n in names)
        digest = hashlib.sha256(f"{self.salt}\x1e{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def bad(self, uri: str, line: int | None, reason: str, text: str = "") -> Record:
        doc = {"file": uri, "line": line, "reason": reason, "text": text[:SAMPLE_CHARS]}
        return (MALFORMED, uri, "", json.dumps(doc), 0.0)

    def label_value(self, values: dict[str, str]) -> tuple[str | float | None, str | None]:
        """The row's class (as text) or target, or None and why the label is unusable."""
        raw = values[self.label]
        if self.classes is None:
            number = float(raw)  # to_example has already checked that it parses
            if not math.isfinite(number):
                return None, f"label {self.label}: {raw!r} is not a finite number"
            return number, None
        text = str(int(raw)) if raw.lstrip("+-").isdigit() else raw  # an int column: 01 is 1
        if text not in self.classes:
            return None, (f"label {self.label}: {raw!r} is not one of the configured classes "
                          f"{self.classes_shown} (label.classes)")
        return text, None

    # -- parsing -----------------------------------------------------------------------------
    def to_example(self, values: dict[str, str]) -> tuple[bytes | None, str | None]:
        """A serialized tf.Example, or None and the reason the row does not fit the schema.

        An empty cell or the missing marker is a missing value: a nullable column leaves the
        feature out; a string column that is not nullable keeps the text as it is (a category of
        its own, as Adult's ``?``); a numeric column that is not nullable cannot hold it.

        The bytes are written directly in protobuf's wire format (:func:`example_bytes`), without
        building a proto object per row or importing TensorFlow (issue 11: ingest's per-row cost).
        """
        entries: list[tuple[str, int, Any]] = []
        for name, typ in self.columns:
            raw = values[name]
            if raw == "" or raw == self.missing_marker:
                if name in self.nullable:
                    continue
                if typ != "string":
                    return None, (f"column {name}: missing value {raw!r} in a numeric column that "
                                  "is not nullable (set `nullable: true` on it in the config if "
                                  "missing values are expected)")
            try:
                if typ == "string":
                    entries.append((name, BYTES, raw.encode()))
                elif typ == "int":
                    number = int(raw)
                    if not -2**63 <= number < 2**63:
                        raise OverflowError(number)
                    entries.append((name, INT64, number))
                else:
                    entries.append((name, FLOAT, float(raw)))
            except ValueError:
                kind = "an integer" if typ == "int" else "a number"
                return None, f"column {name}: {raw!r} is not {kind}"
            except OverflowError:
                return None, f"column {name}: {raw!r} does not fit in 64 bits"
        if not self.build_examples:
            return b"", None
        return example_bytes(entries), None

    def parse_rows(self, uri: str, rows: Iterator[Any],
                   names: list[str]) -> Iterator[Record]:
        """Records of ``rows``: ``(line, fields)`` pairs, or malformed records passed through."""
        for item in rows:
            if item[0] == MALFORMED:
                yield item
                continue
            line_no, fields = item
            if not fields or fields == [""]:
                continue
            if len(fields) != len(names):
                hint = ("an unterminated quote?" if any('"' in f or "\n" in f for f in fields)
                        else "truncated line or wrong delimiter?")
                yield self.bad(uri, line_no, f"{len(fields)} fields where the header has "
                               f"{len(names)} ({hint})", self.delimiter.join(fields))
                continue
            values = dict(zip(names, (f.strip() for f in fields), strict=True))
            payload, reason = self.to_example(values)
            label = None
            if payload is not None:
                label, reason = self.label_value(values)
            if payload is None or label is None:
                yield self.bad(uri, line_no, reason or "unreadable row", self.delimiter.join(fields))
                continue
            yield (ROW, uri, label, payload, self.row_hash(values))

    def check_header(self, uri: str, header: list[str]) -> str | None:
        expected = [n for n, _ in self.columns]
        got = [h.strip() for h in header]
        missing = [n for n in expected if n not in got]
        extra = [n for n in got if n not in expected]
        problems = []
        if missing:
            problems.append(f"lacks column(s) {', '.join(missing)}")
        if extra:
            problems.append(f"has unexpected column(s) {', '.join(extra)}")
        if len(set(got)) != len(got):
            problems.append("repeats a column name")
        if problems:
            hint = ""
            if len(got) == 1 and any(d in got[0] for d in ";\t|"):
                hint = f" (the file does not seem to use the delimiter {self.delimiter!r})"
            return f"header {' and '.join(problems)}{hint}"
        return None

    def parse_file(self, uri: str) -> Iterator[Record]:
        """All records of one landing file, then one ``file`` record with the size and sha256 of
        exactly the bytes parsed (the file is read once, streamed, hashed as it is read).

        Never raises on bad content: it reports it. A file that is not a regular file when it is
        opened (a FIFO, a device, a link swapped in) is reported without reading it.
        """
        try:
            raw = open_regular(uri)
        except NotRegular as exc:
            yield self.bad(uri, None, str(exc))
            return
        stream = HashingStream(raw, self.max_bytes)
        try:
            with raw:
                if self.fmt == "parquet":
                    yield from self.parse_parquet(uri, stream)
                else:
                    yield from self.parse_csv(uri, stream)
                stream.drain()
        except TooLarge:
            yield self.bad(uri, None, f"larger than source.max_file_bytes ({self.max_bytes:,} "
                           "bytes) while it was read (a file still being written?)")
            return
        yield self.file_record(uri, stream)

    def file_record(self, uri: str, stream: HashingStream) -> Record:
        doc = {"uri": uri, "size": stream.size, "sha256": stream.sha.hexdigest()}
        return (FILE, uri, "", json.dumps(doc), 0.0)

    def parse_csv(self, uri: str, stream: HashingStream) -> Iterator[Record]:
        buffered = io.BufferedReader(stream, buffer_size=READ_CHUNK)
        if b"\x00" in buffered.peek(NUL_PROBE)[:NUL_PROBE]:
            yield self.bad(uri, None, "binary content (NUL bytes): not a CSV text file")
            return
        # utf-8-sig: a byte order mark (spreadsheet exports) is not data.
        text = io.TextIOWrapper(buffered, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter=self.delimiter)
        names = [n for n, _ in self.columns]
        rows = self.csv_rows(uri, reader)
        if self.header:
            first = next(rows, None)
            if first is None:
                return  # an empty file: zero rows, which the row-count expectation rejects
            if first[0] == MALFORMED:
                yield first
                return
            problem = self.check_header(uri, first[1])
            if problem:
                yield self.bad(uri, 1, problem, self.delimiter.join(first[1]))
                return
            names = [h.strip() for h in first[1]]
        yield from self.parse_rows(uri, rows, names)

    def csv_rows(self, uri: str, reader) -> Iterator:
        """(first line, fields) of each CSV record; a record that cannot be read (an unterminated
        quote, a field over the csv field limit, bytes that are not UTF-8) ends the file with one
        malformed record naming the line, as a record (MALFORMED, ...) in place of the row."""
        start = 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                quoted = " (an unterminated quote?)" if "field limit" in str(exc) else ""
                yield self.bad(uri, start, f"CSV record starting at line {start} cannot be read: "
                               f"{exc}{quoted}; nothing after it in the file was read")
                return
            except UnicodeDecodeError as exc:
                yield self.bad(uri, start, f"not UTF-8 text ({exc.reason}) at or after line "
                               f"{start}")
                return
            yield start, fields
            start = reader.line_num + 1

    def parse_parquet(self, uri: str, stream: HashingStream) -> Iterator[Record]:
        import pyarrow.parquet as pq

        data = stream.readall()  # Parquet needs the whole file (its footer is at the end)
        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - any reader error is a bad file, said as such
            yield self.bad(uri, None, f"not a readable Parquet file: {exc}")
            return
        problem = self.check_header(uri, table.column_names)
        if problem:
            yield self.bad(uri, None, problem.replace("header", "Parquet schema"))
            return
        names = table.column_names
        rows = ((i + 1, ["" if v is None else str(v) for v in row.values()])
                for i, row in enumerate(table.to_pylist()))
        yield from self.parse_rows(uri, rows, names)
