"""Content hashes: of a file, of a folder (a tree), of a JSON-able value.

What lineage links and ``pipelines lineage verify`` re-checks (docs/CONTRACTS.md, Hashes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: str | os.PathLike, cache: StatCache | None = None) -> str:
    """Content hash of a directory: relative paths and file hashes, in sorted order.

    ``cache`` (:class:`StatCache`) skips reading files whose stat is unchanged since they were
    hashed; without it every byte is read (what lineage verify does)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update((cache.sha256_file(p) if cache else sha256_file(p)).encode() + b"\n")
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class StatCache:
    """sha256 of files remembered by their stat, so an unchanged file is not read again.

    Used by ingest (issue 11 item 4) for landing files and the snapshot tree it reuses: a file whose
    (path, device, inode, size, mtime_ns, ctime_ns) are what they were when it was hashed gets its
    recorded sha256 back without a byte read; any change of size, mtime or ctime (every write
    changes ctime, and ``touch`` cannot set it back) forces a re-hash. An entry is stored only when
    the file's stat was the same before and after the read, and its mtime and ctime are at least
    :data:`RACY_SECONDS` old: file times have a coarse clock (a few ms), so a file written again
    within the same tick as it was hashed could otherwise keep a stale entry (git's "racy" rule).

    Known limit: bytes changed with size, mtime and ctime all kept (a raw block-device write, the
    system clock set back, a file system that does not keep ctime) are not noticed by a cache hit.
    The parse that builds a new snapshot hashes what it reads and refuses a mismatch, and
    ``force`` or removing the cache file (:attr:`file`) hashes everything again. What lineage
    verify re-checks is never taken from here.

    The cache is a JSON file written atomically; concurrent writers lose entries, never correctness
    (a lost entry is a re-hash). It keeps at most ``max_entries``, the least recently used go.
    """

    RACY_SECONDS = 2.0

    def __init__(self, file: str | os.PathLike, max_entries: int = 200_000):
        self.file = Path(file)
        self.max_entries = max_entries
        self.entries: dict[str, list] = {}
        self.hits = self.misses = 0
        self._dirty = False
        try:
            loaded = json.loads(self.file.read_text())
            if isinstance(loaded, dict) and loaded.get("version") == 1:
                self.entries = dict(loaded.get("entries", {}))
        except (OSError, ValueError):
            pass  # no cache yet, or an unreadable one: start empty (it is only a cache)

    @staticmethod
    def key(st: os.stat_result) -> list[int]:
        return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def lookup(self, path: str | os.PathLike, st: os.stat_result | None = None) -> str | None:
        """The recorded sha256 of ``path`` if its stat is unchanged, else None."""
        name = os.path.abspath(path)
        entry = self.entries.get(name)
        if entry is None:
            return None
        if st is None:
            try:
                st = os.stat(name)
            except OSError:
                return None
        if entry[:5] != self.key(st):
            return None
        self.entries[name] = self.entries.pop(name)  # most recently used last
        return entry[5]

    def record(self, path: str | os.PathLike, before: os.stat_result, after: os.stat_result,
               sha256: str, now: float | None = None) -> None:
        """Remembers ``sha256`` for ``path`` read between the stats ``before`` and ``after``."""
        import time

        name = os.path.abspath(path)
        key = self.key(before)
        newest = max(before.st_mtime_ns, before.st_ctime_ns) / 1e9
        if key != self.key(after) or (now or time.time()) - newest < self.RACY_SECONDS:
            self.entries.pop(name, None)
            return
        self.entries.pop(name, None)
        self.entries[name] = [*key, sha256]
        self._dirty = True
        while len(self.entries) > self.max_entries:
            del self.entries[next(iter(self.entries))]

    def forget(self, path: str | os.PathLike) -> None:
        if self.entries.pop(os.path.abspath(path), None) is not None:
            self._dirty = True

    def sha256_file(self, path: str | os.PathLike) -> str:
        """:func:`sha256_file` through the cache."""
        st = os.stat(path)
        got = self.lookup(path, st)
        if got is not None:
            self.hits += 1
            return got
        self.misses += 1
        h = hashlib.sha256()
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            while block := f.read(1 << 20):
                h.update(block)
            after = os.fstat(f.fileno())
        self.record(path, before, after, h.hexdigest())
        return h.hexdigest()

    def save(self) -> None:
        """Writes the cache if it changed (atomically; a failure to write is not an error)."""
        if not self._dirty:
            return
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": 1, "entries": self.entries}))
            os.replace(tmp, self.file)
            self._dirty = False
        except OSError:
            tmp.unlink(missing_ok=True)
