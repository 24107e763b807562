"""The local state store: SQLite under the trainctl home.

It is a cache and an intent log, not the truth: the provider's own listing is. A
create first writes an intent row (state ``creating``, a placeholder id), then the
real id once the provider answers, so a crash in between leaves a row that says a
machine may exist. A record is deleted only after the provider confirms termination.

The file and its ``-wal``/``-shm`` companions are private (0600: SQLite gives the
companions the database file's mode). Every SQLite failure reaches the user as a
``StoreError`` naming the file and the fix: a corrupt file, a lock another process
holds longer than the busy timeout (``[store] busy_timeout`` in the config file,
30 s by default), a read-only file or directory. A store that cannot be written is
opened read-only, so reading commands still work; writing ones then fail cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BadInput, NotFound, OperationFailed
from .home import home, load_config
from .types import ResourceStatus, TrainingStatus

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CREATING = "creating"
BUSY_TIMEOUT = 30.0  # seconds


class StoreError(OperationFailed):
    """The state store cannot be read or written (exit 1); the message names the
    file and the hint the fix."""

    kind = "state_store"


def busy_timeout() -> float:
    """``[store] busy_timeout`` from the config file: how long to wait for a lock."""
    table = load_config().get("store", {})
    value = table.get("busy_timeout", BUSY_TIMEOUT) if isinstance(table, dict) else BUSY_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadInput(f"[store] busy_timeout must be a number of seconds, not {value!r}")
    return float(value)


def store_error(path: Path, e: sqlite3.Error, timeout: float) -> StoreError:
    """What an SQLite failure on ``path`` means, and how to fix it."""
    text = str(e)
    lower = text.lower()
    fix_home = "or point TRAINCTL_HOME at a writable directory"
    if "locked" in lower or "busy" in lower:
        return StoreError(
            f"the state store {path} is locked by another process (waited {timeout:g} s)",
            hint="let the other trainctl command finish and try again, or raise "
            "[store] busy_timeout in the config file",
        )
    if "readonly" in lower or "read-only" in lower:
        return StoreError(
            f"the state store {path} is read-only: this command needs to write it",
            hint=f"make {path} and {path.parent} writable (chmod u+w), {fix_home}",
        )
    if "not a database" in lower or "malformed" in lower or "corrupt" in lower:
        return StoreError(
            f"the state store {path} is corrupt ({text})",
            hint=f"move it aside (mv {path} {path}.corrupt); `trainctl list --refresh` "
            "then shows the machines the providers still list as trainctl's",
        )
    if "unable to open" in lower or "disk i/o" in lower:
        return StoreError(
            f"cannot open the state store {path} ({text})",
            hint=f"check that {path.parent} exists and is writable, {fix_home}",
        )
    return StoreError(f"the state store {path} failed: {text}")


class _Db:
    """An SQLite connection whose failures are ``StoreError`` (constraint violations
    stay ``sqlite3.IntegrityError``, for the callers that expect them)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, timeout: float) -> None:
        self.conn = conn
        self.path = path
        self.timeout = timeout

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, args)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as e:
            raise store_error(self.path, e, self.timeout) from None

    def close(self) -> None:
        self.conn.close()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    instance_type TEXT,
    gpu TEXT,
    gpu_count INTEGER NOT NULL DEFAULT 0,
    spot INTEGER NOT NULL DEFAULT 0,
    region TEXT,
    created_at TEXT NOT NULL,
    launched_at TEXT,
    price_per_hour REAL,
    state TEXT NOT NULL,
    reason TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    command TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    exit_code INTEGER,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_resource ON jobs (resource_id);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class ResourceRecord:
    id: str
    provider: str
    name: str
    instance_type: str | None
    gpu: str | None
    gpu_count: int
    spot: bool
    region: str | None
    created_at: str
    launched_at: str | None
    price_per_hour: float | None
    state: str
    reason: str | None
    updated_at: str

    @property
    def confirmed(self) -> bool:
        """False while only the intent is recorded (the provider has not answered)."""
        return self.state != CREATING

    def hours_running(self, now: datetime | None = None) -> float:
        start = self.launched_at or self.created_at
        delta = (now or datetime.now(timezone.utc)) - datetime.fromisoformat(start)
        return max(delta.total_seconds(), 0.0) / 3600

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class JobRecord:
    id: str
    resource_id: str
    provider: str
    command: list[str]
    started_at: str | None
    ended_at: str | None
    exit_code: int | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "state.db"
        self._db: _Db | None = None
        #: opened read-only (the file or its directory cannot be written)
        self.read_only = False

    @property
    def db(self) -> _Db:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> _Db:
        timeout = busy_timeout()
        try:
            conn = _private_database(self.path, timeout)
        except PermissionError:
            conn = _read_only(self.path, timeout)
            self.read_only = True
        except sqlite3.Error as e:
            raise store_error(self.path, e, timeout) from None
        db = _Db(conn, self.path, timeout)
        try:
            return self._prepare(db)
        except BaseException:
            conn.close()
            raise

    def _prepare(self, db: _Db) -> _Db:
        row = None
        with suppress(sqlite3.OperationalError):
            row = db.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            # a new store (or a corrupt one: reading meta fails, and so will this)
            with _transaction(db):
                _create_schema(db)
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
        elif int(row[0]) > SCHEMA_VERSION:
            raise OperationFailed(
                f"state store {self.path} has schema version {row[0]}, newer than this "
                f"trainctl understands ({SCHEMA_VERSION})",
                hint="upgrade trainctl",
            )
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- resources ---------------------------------------------------------------

    def new_name(self) -> str:
        while True:
            name = "tc-" + secrets.token_hex(3)
            if not self._find("name", name):
                return name

    def begin_create(self, provider: str, name: str, *, spot: bool = False) -> str:
        """Record the intent to create ``name``; returns the placeholder id."""
        if self._find("name", name) or self._find("id", name):
            raise BadInput(f"a resource named {name!r} already exists; choose another --name")
        intent = "intent-" + secrets.token_hex(6)
        now = _now()
        try:
            self.db.execute(
                "INSERT INTO resources (id, provider, name, spot, created_at, state, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (intent, provider, name, int(spot), now, CREATING, now),
            )
        except sqlite3.IntegrityError:  # another process took the name just now
            raise BadInput(
                f"a resource named {name!r} already exists; choose another --name"
            ) from None
        return intent

    def finish_create(self, intent: str, status: ResourceStatus) -> ResourceRecord:
        """Replace the intent's placeholder id with the provider's id and status."""
        self.db.execute(
            "UPDATE resources SET id=?, instance_type=?, gpu=?, gpu_count=?, spot=?, region=?,"
            " launched_at=?, price_per_hour=?, state=?, reason=?, updated_at=? WHERE id=?",
            (
                status.id,
                status.instance_type,
                status.gpu,
                status.gpu_count,
                int(status.spot),
                status.region,
                _iso(status.launch_time),
                status.cost_per_hour,
                status.state.value,
                status.reason,
                _now(),
                intent,
            ),
        )
        return self.resource(status.id)

    def abandon_create(self, intent: str) -> None:
        """Drop an intent whose create call failed with nothing left behind."""
        self.db.execute("DELETE FROM resources WHERE id=? AND state=?", (intent, CREATING))

    def _cache_is_read_only(self, what: str) -> bool:
        """True (and a note in the log) when a cached value cannot be updated: reading
        commands still work on a read-only store, without refreshing its cache."""
        if self._db is None:
            self._db = self._open()  # opening the store settles whether it is read-only
        if self.read_only:
            log.info("state store %s is read-only: %s not recorded", self.path, what)
            return True
        return False

    def update_status(self, status: ResourceStatus) -> None:
        if self._cache_is_read_only(f"the state of {status.id}"):
            return
        fields = ["state=?", "reason=?", "updated_at=?"]
        values: list[Any] = [status.state.value, status.reason, _now()]
        for column, value in (
            ("instance_type", status.instance_type),
            ("launched_at", _iso(status.launch_time)),
            ("price_per_hour", status.cost_per_hour),
        ):
            if value is not None:
                fields.append(f"{column}=?")
                values.append(value)
        self.db.execute(
            f"UPDATE resources SET {', '.join(fields)} WHERE id=?", (*values, status.id)
        )

    def forget(self, resource_id: str) -> None:
        """Delete a record (only once the provider confirmed termination)."""
        with _transaction(self.db):
            self.db.execute("DELETE FROM jobs WHERE resource_id=?", (resource_id,))
            self.db.execute("DELETE FROM resources WHERE id=?", (resource_id,))

    def _find(self, column: str, value: str) -> ResourceRecord | None:
        row = self.db.execute(f"SELECT * FROM resources WHERE {column}=?", (value,)).fetchone()
        return _resource(row) if row else None

    def resource(self, ref: str) -> ResourceRecord:
        """A resource by id or name."""
        found = self._find("id", ref) or self._find("name", ref)
        if found is None:
            raise NotFound(f"no resource {ref!r} (see `trainctl list`)")
        return found

    def resources(self, provider: str | None = None) -> list[ResourceRecord]:
        query, args = "SELECT * FROM resources", ()
        if provider:
            query, args = query + " WHERE provider=?", (provider,)
        return [_resource(r) for r in self.db.execute(query + " ORDER BY created_at", args)]

    # --- jobs --------------------------------------------------------------------

    def add_job(self, record: ResourceRecord, status: TrainingStatus) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                status.job_id,
                record.id,
                record.provider,
                json.dumps(status.command),
                _iso(status.started_at),
                _iso(status.ended_at),
                status.exit_code,
                status.status.value,
            ),
        )

    def update_job(self, status: TrainingStatus) -> None:
        if self._cache_is_read_only(f"the state of job {status.job_id}"):
            return
        self.db.execute(
            "UPDATE jobs SET status=?, exit_code=?, started_at=COALESCE(?, started_at),"
            " ended_at=COALESCE(?, ended_at) WHERE id=?",
            (
                status.status.value,
                status.exit_code,
                _iso(status.started_at),
                _iso(status.ended_at),
                status.job_id,
            ),
        )

    def job(self, job_id: str) -> JobRecord | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None


def _connect(target: str, timeout: float, *, uri: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(target, timeout=timeout, isolation_level=None, uri=uri)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return conn


def _private_database(path: Path, timeout: float) -> sqlite3.Connection:
    """The store opened for writing, its file created (or tightened to) 0600 first,
    so that SQLite's journal files, which take the file's mode, are private too.
    ``PermissionError`` when it cannot be written."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        info = os.fstat(fd)
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(path.parent)  # the journal files cannot be made
    conn = _connect(str(path), timeout)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as e:
        conn.close()
        if "readonly" in str(e).lower():
            raise PermissionError(path) from None
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def _read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A store that cannot be written, opened for reading. Without write access to
    its directory SQLite cannot make the ``-shm`` file a WAL store needs to be read,
    so the file is then read as immutable: nothing can be writing it either."""
    if not path.exists():
        raise StoreError(
            f"cannot create the state store {path}: {path.parent} is not writable",
            hint="make it writable (chmod u+w), or point TRAINCTL_HOME at a writable directory",
        )
    uri = path.resolve().as_uri()
    last: sqlite3.Error | None = None
    for options in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = _connect(f"{uri}?{options}", timeout, uri=True)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as e:
            last = e
    assert last is not None
    raise store_error(path, last, timeout) from None


def _create_schema(db: _Db) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


@contextmanager
def _transaction(db: _Db) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _resource(row: sqlite3.Row) -> ResourceRecord:
    d = dict(row)
    d["spot"] = bool(d["spot"])
    return ResourceRecord(**d)


def _job(row: sqlite3.Row) -> JobRecord:
    d = dict(row)
    d["command"] = json.loads(d["command"])
    return JobRecord(**d)
