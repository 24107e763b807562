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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BadInput, NotFound, OperationFailed
from .home import home, load_config
from .types import ExecutionStatus, ResourceState, ResourceStatus, TrainingJob, TrainingStatus

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

# Groups of machines made for one multi-node job (``--nodes``): recorded before what
# the group shares is made, so nothing of it is left without a record; created on first use.
_GROUPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS machine_groups (
    name TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    size INTEGER NOT NULL,
    members TEXT NOT NULL,
    network TEXT,
    created_at TEXT NOT NULL
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

#: what a run record holds beyond the first schema's jobs table: added to a store made
#: before, so that its jobs become runs too
_RUN_COLUMNS = {
    "machine": "TEXT",
    "instance_type": "TEXT",
    "gpu": "TEXT",
    "gpu_count": "INTEGER",
    "spot": "INTEGER",
    "region": "TEXT",
    "env_names": "TEXT",
    "workdir": "TEXT",
    "git_commit": "TEXT",
    "git_dirty": "INTEGER",
    "checkpoint_dir": "TEXT",
    "reason": "TEXT",
    "ended_by": "TEXT",
    "price_per_hour": "REAL",
    "log_size": "INTEGER",
    "log_complete": "INTEGER",
    "recorded_at": "TEXT",
    "run_id": "TEXT",
    "attempt": "INTEGER",
}

# Every machine trainctl rented, kept after its release: what it cost.
_MACHINES_SCHEMA = """
CREATE TABLE IF NOT EXISTS machine_history (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    name TEXT NOT NULL,
    instance_type TEXT,
    gpu TEXT,
    gpu_count INTEGER NOT NULL DEFAULT 0,
    spot INTEGER NOT NULL DEFAULT 0,
    region TEXT,
    price_per_hour REAL,
    launched_at TEXT NOT NULL,
    ended_at TEXT,
    periods TEXT NOT NULL,
    billed REAL,
    updated_at TEXT NOT NULL
)
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
    """A run: one job, kept after its machine is released (never dropped with it)."""

    id: str
    resource_id: str
    provider: str
    command: list[str]
    started_at: str | None
    ended_at: str | None
    exit_code: int | None
    status: str
    #: the machine's name, and the offer it was rented as
    machine: str | None = None
    instance_type: str | None = None
    gpu: str | None = None
    gpu_count: int | None = None
    spot: bool = False
    region: str | None = None
    #: the names of the job's environment values (never the values)
    env_names: list[str] = field(default_factory=list)
    workdir: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    checkpoint_dir: str | None = None
    reason: str | None = None
    #: what ended the job when trainctl or the guard did: "deadline", "spend cap",
    #: "released" (its machine was released under it)
    ended_by: str | None = None
    price_per_hour: float | None = None
    #: the log's size on the machine when last seen, and whether all of it is at home
    log_size: int | None = None
    log_complete: bool = False
    recorded_at: str | None = None
    #: a run that recovers is one job per attempt: the first attempt's job id, shared by
    #: all of them, and this one's number (1 for the first); None for a run of one job
    run_id: str | None = None
    attempt: int | None = None

    @property
    def final(self) -> bool:
        return ExecutionStatus(self.status).is_final

    @property
    def how(self) -> str:
        """How it ended (or that it has not): its status, or what ended it."""
        return self.ended_by or self.status

    def hours(self, now: datetime | None = None) -> float | None:
        if not self.started_at:
            return None
        end = datetime.fromisoformat(self.ended_at) if self.ended_at else None
        if end is None and self.final:
            return None  # ended at a time nobody saw
        delta = (end or now or datetime.now(timezone.utc)) - datetime.fromisoformat(self.started_at)
        return max(delta.total_seconds(), 0.0) / 3600

    def cost(self, now: datetime | None = None) -> float | None:
        """The machine's hourly price over the run's time (the machine's own cost also
        counts the time around its runs)."""
        hours = self.hours(now)
        if hours is None or self.price_per_hour is None:
            return None
        return round(self.price_per_hour * hours, 4)

    def to_status(self) -> TrainingStatus:
        """The job as last recorded."""
        return TrainingStatus(
            job_id=self.id,
            resource_id=self.resource_id,
            status=ExecutionStatus(self.status),
            exit_code=self.exit_code,
            reason=self.reason,
            command=self.command,
            started_at=datetime.fromisoformat(self.started_at) if self.started_at else None,
            ended_at=datetime.fromisoformat(self.ended_at) if self.ended_at else None,
            log_size=self.log_size or 0,
            ended_by=self.ended_by if self.ended_by != RELEASED else None,
        )

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["how"] = self.how
        d["hours"] = None if self.hours() is None else round(self.hours() or 0.0, 4)
        d["cost"] = self.cost()
        return d


#: ``JobRecord.ended_by`` of a job whose machine was released while it ran
RELEASED = "released"
#: ``JobRecord.ended_by`` of a job whose machine its provider reclaimed (a spot
#: machine's interruption; on AWS the guard ends the job at the notice)
PREEMPTED = "preempted"


@dataclass
class MachineRecord:
    """A machine trainctl rented, as the history keeps it: when it billed."""

    id: str
    provider: str
    name: str
    instance_type: str | None
    gpu: str | None
    gpu_count: int
    spot: bool
    region: str | None
    price_per_hour: float | None
    launched_at: str
    ended_at: str | None
    #: when it billed: [start, end] pairs, the last one's end None while it runs
    periods: list[list[str | None]]
    #: what the provider says it billed, where its API says (Lyceum's ``croesus_billed``)
    billed: float | None
    updated_at: str

    def hours(self, now: datetime | None = None, since: datetime | None = None) -> float:
        """Hours billed (since ``since``): running time, stopped time left out."""
        now = now or datetime.now(timezone.utc)
        total = 0.0
        for start, end in self.periods:
            assert start is not None
            begin = datetime.fromisoformat(start)
            if since is not None:
                begin = max(begin, since)
            stop = datetime.fromisoformat(end) if end else now
            total += max((stop - begin).total_seconds(), 0.0)
        return total / 3600

    def cost(self, now: datetime | None = None, since: datetime | None = None) -> float | None:
        """The provider's billed amount where it gives one (for the whole life of the
        machine), else price times the hours billed since ``since``."""
        whole = since is None or datetime.fromisoformat(self.launched_at) >= since
        if self.billed is not None and whole:
            return round(self.billed, 4)
        if self.price_per_hour is None:
            return None
        return round(self.price_per_hour * self.hours(now, since), 4)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["hours"] = round(self.hours(), 4)
        d["cost"] = self.cost()
        return d


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "state.db"
        self._db: _Db | None = None
        #: opened read-only (the file or its directory cannot be written)
        self.read_only = False
        #: intents begun by this process: id -> (provider, name, created_at)
        self._begun: dict[str, tuple[str, str, str]] = {}
        self._intents_ready = False
        #: the columns of the jobs table (a read-only store made before may lack some)
        self._run_columns: set[str] = set()

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
        if not self.read_only:
            columns = {r[1] for r in db.execute("PRAGMA table_info(resources)")}
            for column in ("connection", "guards"):  # a store made before they were kept
                if column not in columns:
                    db.execute(f"ALTER TABLE resources ADD COLUMN {column} TEXT")
            columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
            for column, kind in _RUN_COLUMNS.items():
                if column not in columns:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
            db.execute(_MACHINES_SCHEMA)
        elif not db.execute("SELECT 1 FROM sqlite_master WHERE name='machine_history'").fetchone():
            # a read-only store made before the history was kept: an empty stand-in
            db.execute(_MACHINES_SCHEMA.replace("TABLE", "TEMP TABLE", 1))
        self._run_columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
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
        record = self.resource(status.id)
        if record.confirmed and status.state is not ResourceState.UNKNOWN:
            self._open_history(record)
        return record

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
        self._note_state(status)

    def set_guards(self, resource_id: str, guards: dict[str, Any] | None) -> None:
        self.db.execute(
            "UPDATE resources SET guards=? WHERE id=?",
            (json.dumps(guards) if guards else None, resource_id),
        )

    def forget(self, resource_id: str) -> None:
        """Delete a machine's record (only once the provider confirmed termination).
        Its runs and its history stay: runs still running end as ``RELEASED``."""
        with _transaction(self.db):
            self.end_runs(resource_id, how=RELEASED, reason="ended by releasing its machine")
            self._close_history(resource_id)
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

    # --- runs (the jobs table) ---------------------------------------------------

    def add_job(
        self,
        record: ResourceRecord,
        status: TrainingStatus,
        *,
        job: TrainingJob | None = None,
        git: tuple[str, bool] | None = None,
        attempt: tuple[str, int] | None = None,
    ) -> None:
        """Record a run: the job as started (``job``: what was asked, when this
        process started it; ``git``: the workdir's commit and whether it was dirty;
        ``attempt``: the run it is an attempt of, and its number)."""
        values: dict[str, Any] = {
            "id": status.job_id,
            "resource_id": record.id,
            "provider": record.provider,
            "command": json.dumps(status.command or (job.command if job else [])),
            "started_at": _iso(status.started_at),
            "ended_at": _iso(status.ended_at),
            "exit_code": status.exit_code,
            "status": status.status.value,
            "machine": record.name,
            "instance_type": record.instance_type,
            "gpu": record.gpu,
            "gpu_count": record.gpu_count,
            "spot": int(record.spot),
            "region": record.region,
            "reason": status.reason,
            "ended_by": status.ended_by,
            "price_per_hour": record.price_per_hour,
            "log_size": status.log_size,
            "log_complete": 0,
            "recorded_at": _now(),
        }
        if job is not None:
            values.update(
                env_names=json.dumps(sorted(job.env)),
                workdir=job.workdir,
                checkpoint_dir=job.checkpoint_dir,
            )
        if git is not None:
            values.update(git_commit=git[0], git_dirty=int(git[1]))
        if attempt is not None:
            values.update(run_id=attempt[0], attempt=attempt[1])
        values = {k: v for k, v in values.items() if k in self._columns()}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        self.db.execute(
            f"INSERT OR REPLACE INTO jobs ({names}) VALUES ({marks})", (*values.values(),)
        )

    def _columns(self) -> set[str]:
        if self._db is None:
            self._db = self._open()
        return self._run_columns

    def update_job(self, status: TrainingStatus) -> None:
        if self._cache_is_read_only(f"the state of job {status.job_id}"):
            return
        self.db.execute(
            "UPDATE jobs SET status=?, exit_code=?, started_at=COALESCE(?, started_at),"
            " ended_at=COALESCE(?, ended_at), reason=?, ended_by=COALESCE(?, ended_by),"
            " log_size=MAX(COALESCE(log_size, 0), ?) WHERE id=?"
            # a run its machine was reclaimed under is over, whatever is read later
            # from a machine the provider has not stopped yet (the job still running),
            # unless what is read is the guard's own word that it was preempted
            " AND (COALESCE(ended_by, '') != ? OR COALESCE(?, '') = ?)",
            (
                status.status.value,
                status.exit_code,
                _iso(status.started_at),
                _iso(status.ended_at),
                status.reason,
                status.ended_by,
                status.log_size,
                status.job_id,
                PREEMPTED,
                status.ended_by,
                PREEMPTED,
            ),
        )

    def set_log_complete(self, job_id: str) -> None:
        if not self._cache_is_read_only(f"the log of job {job_id}"):
            self.db.execute("UPDATE jobs SET log_complete=1 WHERE id=?", (job_id,))

    def job(self, job_id: str) -> JobRecord | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def runs(
        self,
        *,
        machine: str | None = None,
        resource_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
    ) -> list[JobRecord]:
        """Run records, newest first: of a machine (by name, or by id), with a status or
        an ``ended_by`` of ``status``, started (or recorded) since ``since``."""
        where, args = [], []
        if machine is not None:
            where.append("machine=?")
            args.append(machine)
        if resource_id is not None:
            where.append("resource_id=?")
            args.append(resource_id)
        if status is not None:
            where.append("(status=? OR ended_by=?)")
            args += [status, status]
        query = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        found = [_job(r) for r in self.db.execute(query, args)]
        if since is not None:
            found = [r for r in found if _when(r) >= since]
        return sorted(found, key=_when, reverse=True)

    def end_runs(self, resource_id: str, *, how: str, reason: str) -> None:
        """The runs of a machine that is gone and still recorded as running: ended now,
        by ``how`` (``RELEASED`` when trainctl released it, ``PREEMPTED`` when its
        provider reclaimed it, else ``lost``)."""
        if self._cache_is_read_only(f"the runs of {resource_id}"):
            return
        status = ExecutionStatus.CANCELLED if how == RELEASED else ExecutionStatus.LOST
        self.db.execute(
            "UPDATE jobs SET status=?, ended_by=?, reason=?, ended_at=COALESCE(ended_at, ?)"
            " WHERE resource_id=? AND status IN ('pending', 'running')",
            (status.value, how if how in (RELEASED, PREEMPTED) else None, reason, _now(),
             resource_id),
        )

    def attempts(self, run_id: str) -> list[JobRecord]:
        """The attempts of a run that recovers, first first."""
        rows = self.db.execute("SELECT * FROM jobs WHERE run_id=?", (run_id,))
        return sorted((_job(r) for r in rows), key=lambda r: r.attempt or 0)

    # --- the machines' history ---------------------------------------------------

    def _open_history(self, record: ResourceRecord) -> None:
        launched = record.launched_at or record.created_at
        self.db.execute(
            "INSERT OR IGNORE INTO machine_history (id, provider, name, instance_type, gpu,"
            " gpu_count, spot, region, price_per_hour, launched_at, periods, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.provider,
                record.name,
                record.instance_type,
                record.gpu,
                record.gpu_count,
                int(record.spot),
                record.region,
                record.price_per_hour,
                launched,
                json.dumps([[launched, None]]),
                _now(),
            ),
        )

    def _note_state(self, status: ResourceStatus) -> None:
        """Keep the machine's billed periods in step with its state: a period ends when
        it is seen stopped or gone, and a new one begins when it is seen running again
        (at its provider's launch time when that is later than the stop)."""
        if status.state is ResourceState.TERMINATED:
            self.end_runs(
                status.id,
                how=ExecutionStatus.LOST.value,
                reason=f"its machine is gone: {status.provider} says it is terminated"
                + (f" ({status.reason})" if status.reason else ""),
            )
        machine = self.machine(status.id)
        if machine is None or machine.ended_at is not None:
            return
        periods = machine.periods
        now = _now()
        is_open = periods[-1][1] is None
        if status.state in (ResourceState.STOPPED, ResourceState.TERMINATED) and is_open:
            periods[-1][1] = now
        elif status.state in (ResourceState.RUNNING, ResourceState.STARTING) and not is_open:
            began = _iso(status.launch_time)
            stopped = periods[-1][1] or now
            periods.append([began if began and began > stopped else now, None])
        ended = now if status.state is ResourceState.TERMINATED else None
        billed = status.details.get("billed_usd")
        self.db.execute(
            "UPDATE machine_history SET periods=?, ended_at=COALESCE(?, ended_at),"
            " billed=COALESCE(?, billed), price_per_hour=COALESCE(?, price_per_hour),"
            " updated_at=? WHERE id=?",
            (
                json.dumps(periods),
                ended,
                billed if isinstance(billed, int | float) else None,
                status.cost_per_hour,
                now,
                status.id,
            ),
        )

    def _close_history(self, resource_id: str) -> None:
        machine = self.machine(resource_id)
        if machine is None or machine.ended_at is not None:
            return
        now = _now()
        if machine.periods[-1][1] is None:
            machine.periods[-1][1] = now
        self.db.execute(
            "UPDATE machine_history SET periods=?, ended_at=?, updated_at=? WHERE id=?",
            (json.dumps(machine.periods), now, now, resource_id),
        )

    def machine(self, resource_id: str) -> MachineRecord | None:
        row = self.db.execute("SELECT * FROM machine_history WHERE id=?", (resource_id,)).fetchone()
        return _machine(row) if row else None

    def machines(self, *, since: datetime | None = None) -> list[MachineRecord]:
        """Every machine in the history (released ones included), newest first."""
        found = [_machine(r) for r in self.db.execute("SELECT * FROM machine_history")]
        if since is not None:
            found = [
                m
                for m in found
                if m.ended_at is None or datetime.fromisoformat(m.ended_at) >= since
            ]
        return sorted(found, key=lambda m: m.launched_at, reverse=True)

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


    # --- machine groups (--nodes) --------------------------------------------------

    def add_group(self, name: str, provider: str, size: int) -> None:
        """Record a group before anything of it is made (an existing name is refused)."""
        self.require_writable(f"group {name}")
        self.db.execute(_GROUPS_SCHEMA)
        if self.group(name) is not None or self._find("name", name):
            raise BadInput(f"the name {name} is taken", hint="pick another with --name")
        self.db.execute(
            "INSERT INTO machine_groups VALUES (?, ?, ?, '[]', NULL, ?)",
            (name, provider, size, _now()),
        )

    def update_group(
        self,
        name: str,
        *,
        members: list[str] | None = None,
        network: dict[str, Any] | None = None,
    ) -> None:
        """Set the group's member ids (node 0 first) or what its machines share."""
        if members is not None:
            self.db.execute(
                "UPDATE machine_groups SET members=? WHERE name=?", (json.dumps(members), name)
            )
        if network is not None:
            self.db.execute(
                "UPDATE machine_groups SET network=? WHERE name=?", (json.dumps(network), name)
            )

    def group(self, name: str) -> dict[str, Any] | None:
        """The group called ``name``: provider, size, members (ids, node 0 first) and
        network (None until made), or None."""
        if not self._has_groups():
            return None
        row = self.db.execute(
            "SELECT name, provider, size, members, network, created_at FROM machine_groups"
            " WHERE name=?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        return {
            "name": row[0],
            "provider": row[1],
            "size": row[2],
            "members": json.loads(row[3]),
            "network": json.loads(row[4]) if row[4] else None,
            "created_at": row[5],
        }

    def groups(self) -> list[dict[str, Any]]:
        if not self._has_groups():
            return []
        names = [r[0] for r in self.db.execute("SELECT name FROM machine_groups ORDER BY name")]
        return [g for g in (self.group(n) for n in names) if g is not None]

    def _has_groups(self) -> bool:
        found = self.db.execute("SELECT 1 FROM sqlite_master WHERE name='machine_groups'")
        return found.fetchone() is not None

    def forget_group(self, name: str) -> None:
        self.db.execute(_GROUPS_SCHEMA)
        self.db.execute("DELETE FROM machine_groups WHERE name=?", (name,))


def _when(run: JobRecord) -> datetime:
    return datetime.fromisoformat(run.started_at or run.recorded_at or "1970-01-01T00:00:00+00:00")


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
    d = {k: v for k, v in dict(row).items() if v is not None}
    d["command"] = json.loads(d["command"])
    d["env_names"] = json.loads(d.get("env_names") or "[]")
    for flag in ("spot", "git_dirty", "log_complete"):
        if flag in d:
            d[flag] = bool(d[flag])
    d.setdefault("started_at", None)
    d.setdefault("ended_at", None)
    d.setdefault("exit_code", None)
    return JobRecord(**d)


def _machine(row: sqlite3.Row) -> MachineRecord:
    d = dict(row)
    d["spot"] = bool(d["spot"])
    d["periods"] = json.loads(d["periods"])
    return MachineRecord(**d)
