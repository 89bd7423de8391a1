"""Durable state for the stand-ins (the HIS simulator and the WeChat sandbox): a small SQLite file in DATA_DIR,
so that a demo survives restarts as the real systems would (a restarted simulator must not hand out an MRN
it already gave). One row per entry, written through on every change; synchronous sqlite3 is fine here, as
the stand-ins answer demo and test traffic on one event loop.

A file belongs to one process at a time (an exclusive lock next to it): a second process started on the same
DATA_DIR (a `worker` beside `web`) keeps its stand-ins in memory only, as before, and says so in the log.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("referral_cloud.standin_state")

SCHEMA = """CREATE TABLE IF NOT EXISTS entry (
    scope TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (scope, kind, key))"""


class DurableState:
    """Entries (scope, kind, key) → JSON value in one SQLite file, owned by this process while open."""

    def __init__(self, connection: sqlite3.Connection, lock: int, path: Path) -> None:
        self._db = connection
        self._lock = lock
        self.path = path
        self._batch = 0

    @classmethod
    def open(cls, path: Path) -> DurableState | None:
        """The state file at `path`, or None when another process owns it (then keep state in memory)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            log.warning("%s is in use by another process: this process's stand-in keeps its state in memory only",
                        path.name)
            return None
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(SCHEMA)
        return cls(connection, lock, path)

    def close(self) -> None:
        self._db.close()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        os.close(self._lock)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Write everything inside as one transaction (a seed, a reset)."""
        if self._batch == 0:
            self._db.execute("BEGIN")
        self._batch += 1
        try:
            yield
        except BaseException:
            self._batch -= 1
            if self._batch == 0:
                self._db.execute("ROLLBACK")
            raise
        self._batch -= 1
        if self._batch == 0:
            self._db.execute("COMMIT")

    def put(self, scope: str, kind: str, key: str, value: Any) -> None:
        self._db.execute("INSERT INTO entry (scope, kind, key, value) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (scope, kind, key) DO UPDATE SET value = excluded.value",
                         (scope, kind, key, json.dumps(value, ensure_ascii=False)))

    def delete(self, scope: str, kind: str, key: str | None = None) -> None:
        """Delete one entry, or every entry of `kind` when `key` is None."""
        if key is None:
            self._db.execute("DELETE FROM entry WHERE scope = ? AND kind = ?", (scope, kind))
        else:
            self._db.execute("DELETE FROM entry WHERE scope = ? AND kind = ? AND key = ?", (scope, kind, key))

    def clear(self, scope: str) -> None:
        self._db.execute("DELETE FROM entry WHERE scope = ?", (scope,))

    def load(self, scope: str, kind: str) -> dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM entry WHERE scope = ? AND kind = ? ORDER BY rowid",
                                (scope, kind))
        return {key: json.loads(value) for key, value in rows}

    def has(self, scope: str) -> bool:
        return self._db.execute("SELECT 1 FROM entry WHERE scope = ? LIMIT 1", (scope,)).fetchone() is not None
