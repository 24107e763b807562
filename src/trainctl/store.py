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
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BadInput, NotFound, OperationFailed
from .home import home, load_config
from .types import ResourceState, ResourceStatus, TrainingStatus

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


#: the longest a create may take (waiting for a machine to be ready included); an
#: intent whose creator cannot be checked is not dropped younger than this
CREATE_MAX_SECONDS = 3600.0
#: how long a create call sent just before its process died may still be carried out
#: by the provider (twice the HTTP timeout); ``[create] request_grace`` in the config
REQUEST_GRACE_SECONDS = 60.0

# Who is creating what: one row per intent, kept until the create ends.
_INTENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS create_intents (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    identity TEXT,
    host TEXT NOT NULL
)
"""

# Where each machine made with --store saves its jobs' work (runtime/objstore.py), never
# deleted with the machine; created on first use.
_OBJECT_STORES_SCHEMA = """
CREATE TABLE IF NOT EXISTS object_stores (
    resource_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    saved TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""

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
    updated_at TEXT NOT NULL,
    connection TEXT,
    guards TEXT
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
    #: how the machine was reached when last seen (its status's ``ssh_host``,
    #: ``ssh_port``, ``ssh_user`` and ``tags``, where known), so that a later command
    #: can connect without asking the provider first (``last_seen``)
    connection: dict[str, Any] | None = None
    #: what the machine's guard enforces (``guards.Guards.to_dict``), once armed
    guards: dict[str, Any] | None = None

    @property
    def confirmed(self) -> bool:
        """False while only the intent is recorded (the provider has not answered)."""
        return self.state != CREATING

    def hours_running(self, now: datetime | None = None) -> float:
        start = self.launched_at or self.created_at
        delta = (now or datetime.now(timezone.utc)) - datetime.fromisoformat(start)
        return max(delta.total_seconds(), 0.0) / 3600

    def last_seen(self) -> ResourceStatus | None:
        """The machine as last recorded, with what connecting to it needs; None when
        nothing about reaching it is recorded."""
        if self.connection is None:
            return None
        fields = {k: self.connection.get(k) for k in ("ssh_host", "ssh_port", "ssh_user")}
        return ResourceStatus(
            self.id,
            self.provider,
            ResourceState(self.state) if self.confirmed else ResourceState.UNKNOWN,
            name=self.name,
            region=self.region,
            tags=dict(self.connection.get("tags") or {}),
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "connection"}


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
        #: intents begun by this process: id -> (provider, name, created_at)
        self._begun: dict[str, tuple[str, str, str]] = {}
        self._intents_ready = False

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
        elif not self.read_only:
            columns = {r[1] for r in db.execute("PRAGMA table_info(resources)")}
            for column in ("connection", "guards"):  # a store made before they were kept
                if column not in columns:
                    db.execute(f"ALTER TABLE resources ADD COLUMN {column} TEXT")
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
        """Record the intent to create ``name``; returns the placeholder id.

        The intent names its creator (this process, its start time and host), so
        that no one drops it while the create may still act (``create_in_flight``)."""
        if self._find("name", name) or self._find("id", name):
            raise BadInput(f"a resource named {name!r} already exists; choose another --name")
        intent = "intent-" + secrets.token_hex(6)
        now = _now()
        self._ensure_intents_table()
        try:
            with _transaction(self.db):
                self.db.execute(
                    "INSERT INTO resources (id, provider, name, spot, created_at, state,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (intent, provider, name, int(spot), now, CREATING, now),
                )
                self.db.execute(
                    "INSERT INTO create_intents VALUES (?, ?, ?, ?)",
                    (intent, os.getpid(), _process_identity(os.getpid()), socket.gethostname()),
                )
        except sqlite3.IntegrityError:  # another process took the name just now
            raise BadInput(
                f"a resource named {name!r} already exists; choose another --name"
            ) from None
        self._begun[intent] = (provider, name, now)
        return intent

    def _ensure_intents_table(self) -> None:
        # Created on first use, so that a store made by an older trainctl gains it too.
        # A read-only store made before it has no intents to show: an empty temporary
        # table stands in.
        if not self._intents_ready:
            if not self._cache_is_read_only("the create intents table"):
                self.db.execute(_INTENTS_SCHEMA)
            elif not self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE name='create_intents'"
            ).fetchone():
                self.db.execute(_INTENTS_SCHEMA.replace("TABLE", "TEMP TABLE", 1))
            self._intents_ready = True

    def create_in_flight(
        self, record: ResourceRecord, *, request_grace: float = REQUEST_GRACE_SECONDS
    ) -> str | None:
        """Why the create behind an unconfirmed ``record`` may still act (a sentence),
        or None when it cannot. It may while its process runs, and for
        ``request_grace`` seconds after the intent was written even when that process
        is gone (killed with a create call in flight, which the provider may still
        carry out); where the process cannot be checked (another host, or no process
        recorded), until the intent is older than the longest a create can take."""
        self._ensure_intents_table()
        row = self.db.execute(
            "SELECT pid, identity, host FROM create_intents WHERE id=?", (record.id,)
        ).fetchone()
        age = record.hours_running() * 3600
        if row is None:
            return "its create may still be running" if age < CREATE_MAX_SECONDS else None
        pid, identity, host = row
        where = f"process {pid} on {host}"
        alive = _alive(pid, identity) if host == socket.gethostname() else None
        if alive:
            return f"its create ({where}) is still running"
        if alive is None and age < CREATE_MAX_SECONDS:
            return f"its create ({where}) may still be running"
        if age < request_grace:
            return (
                f"its create ({where}) ended {age:.0f}s ago; a call it sent may still be "
                f"carried out for {request_grace - age:.0f}s more"
            )
        return None

    def finish_create(self, intent: str, status: ResourceStatus) -> ResourceRecord:
        """Replace the intent's placeholder id with the provider's id and status.

        A machine that was made is always recorded: if the intent is gone (settled
        by another process meanwhile), the record is made again from what this
        process began, or updated where another process already adopted it."""
        values = (
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
            _connection(status),
        )
        columns = (
            "instance_type=?, gpu=?, gpu_count=?, spot=?, region=?, launched_at=?,"
            " price_per_hour=?, state=?, reason=?, updated_at=?, connection=?"
        )
        self._ensure_intents_table()
        with _transaction(self.db):
            self.db.execute("DELETE FROM create_intents WHERE id=?", (intent,))
            done = self.db.execute(
                f"UPDATE resources SET id=?, {columns} WHERE id=?", (status.id, *values, intent)
            ).rowcount
            if not done:
                done = self.db.execute(
                    f"UPDATE resources SET {columns} WHERE id=?", (*values, status.id)
                ).rowcount
            if not done:
                self._reinsert(intent, status, values)
        self._begun.pop(intent, None)
        return self.resource(status.id)

    def _reinsert(self, intent: str, status: ResourceStatus, values: tuple) -> None:
        provider, name, created = self._begun.get(intent) or (
            status.provider,
            status.name or status.id,
            _now(),
        )
        if self._find("name", name):  # the name was taken since: keep the machine all the same
            name = f"{name}-{status.id}"
        self.db.execute(
            "INSERT INTO resources (id, provider, name, created_at, instance_type, gpu,"
            " gpu_count, spot, region, launched_at, price_per_hour, state, reason, updated_at,"
            " connection) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (status.id, provider, name, created, *values),
        )

    def abandon_create(self, intent: str) -> None:
        """Drop an intent whose create call failed with nothing left behind."""
        self._ensure_intents_table()
        with _transaction(self.db):
            self.db.execute("DELETE FROM create_intents WHERE id=?", (intent,))
            self.db.execute("DELETE FROM resources WHERE id=? AND state=?", (intent, CREATING))
        self._begun.pop(intent, None)

    def require_writable(self, action: str) -> None:
        """Refuse ``action`` up front on a read-only store: a machine released (or
        made) whose record cannot then be changed would leave the store wrong."""
        if self._db is None:
            self._db = self._open()
        if self.read_only:
            raise StoreError(
                f"the state store {self.path} is read-only: {action} needs to write it",
                hint=f"make {self.path} and {self.path.parent} writable (chmod u+w)",
            )

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
        fields = ["state=?", "reason=?", "updated_at=?", "connection=?"]
        values: list[Any] = [status.state.value, status.reason, _now(), _connection(status)]
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

    def set_guards(self, resource_id: str, guards: dict[str, Any] | None) -> None:
        self.db.execute(
            "UPDATE resources SET guards=? WHERE id=?",
            (json.dumps(guards) if guards else None, resource_id),
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

    # --- object stores (--store) ---------------------------------------------------

    def save_object_store(self, resource_id: str, name: str, saved: dict[str, Any]) -> None:
        """Record (or replace) where the machine's guard saves its jobs' work: kept
        after the machine's record is deleted, so that ``download`` finds it there.
        ``saved``: url, bucket, prefix, endpoint, region, credentials (how they are
        signed, never a secret) and jobs ([{"id", "checkpoint_dir"}])."""
        self.db.execute(_OBJECT_STORES_SCHEMA)
        self.db.execute(
            "INSERT OR REPLACE INTO object_stores VALUES (?, ?, ?, ?)",
            (resource_id, name, json.dumps(saved), _now()),
        )

    def object_store(self, ref: str) -> dict[str, Any] | None:
        """What ``save_object_store`` kept for the machine with id or name ``ref`` (the
        newest, when a name was reused), with its ``resource_id`` and ``name``."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name='object_stores'").fetchone():
            return None
        row = self.db.execute(
            "SELECT resource_id, name, saved FROM object_stores WHERE resource_id=? OR name=?"
            " ORDER BY resource_id=? DESC, updated_at DESC LIMIT 1",
            (ref, ref, ref),
        ).fetchone()
        if row is None:
            return None
        return {**json.loads(row[2]), "resource_id": row[0], "name": row[1]}


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


def _process_identity(pid: int) -> str | None:
    """What tells this process from a later one with the same pid: the boot and the
    start time (Linux ``/proc``), or None where that cannot be read."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return f"{boot}:{fields[19]}"  # field 22 of stat: start time since boot


def _alive(pid: int, identity: str | None) -> bool | None:
    """Whether the process that recorded ``identity`` still runs here (None: cannot
    tell, a pid alive without a recorded identity may be another process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    if identity is None:
        return None
    return _process_identity(pid) == identity


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
    for column in ("connection", "guards"):
        d[column] = json.loads(d[column]) if d.get(column) else None
    return ResourceRecord(**d)


def _connection(status: ResourceStatus) -> str | None:
    """What of ``status`` reaching the machine needs (``ResourceRecord.connection``)."""
    found: dict[str, Any] = {
        k: getattr(status, k) for k in ("ssh_host", "ssh_port", "ssh_user") if getattr(status, k)
    }
    if status.tags:
        found["tags"] = status.tags
    return json.dumps(found) if found else None


def _job(row: sqlite3.Row) -> JobRecord:
    d = dict(row)
    d["command"] = json.loads(d["command"])
    return JobRecord(**d)
