"""The sweep results store: one SQLite database in WAL mode, written by sweep drivers, read by anyone.

    <results>/store.sqlite    tables epochs, trials, members (+ claims, columns, meta)

    epochs   one row per (trial_id, epoch): the epoch's metrics, nothing else
    trials   one row per trial: its configuration (every config key as a dotted column), `sweep`
             (the sweep that computed it), status (running | completed | failed | stopped),
             summary metrics, provenance (`git.*`, `version.*`, `hw.*`, `timing.*`), attempts,
             interruptions, started_at (first start) and finished_at
    members  one row per (sweep, trial_id): which sweeps contain a trial, with its axis values
    claims   which driver runs which trial, until when (a lease its heartbeat renews)

Why SQLite (docs/store.md has the measurements): one epoch report is one small transaction
(~1 ms at any store size), readers see a consistent snapshot while drivers write (WAL), two
drivers serialise their transactions, a killed writer loses only the transaction it was in, and
the claims that keep two drivers from computing one trial live in the same transactions as the
rows they guard. Reading every row back is a few seconds at a million epoch rows.

Reading, from Python (no tort needed):

    import sqlite3, pandas as pd
    pd.read_sql_query("SELECT * FROM trials", sqlite3.connect("results/store.sqlite"))

or `tort_core.store.read_table("results", "epochs")`, which also reads stores written before
the database existed (three Parquet files: epochs/epochs.parquet, trials/trials.parquet,
sweeps/members.parquet); the first sweep that writes such a store imports them (`migrate`) and
moves the files to `.legacy/`. `export_parquet(results, dest)` writes a consistent Parquet copy.

Rules that keep every record right: an epoch row is written once (a replayed epoch is ignored,
never rewritten); a trial's configuration, `sweep` and `started_at` are written by the driver that
first claims it and never again; every other write to a trial needs its claim, so a driver that
lost its lease (its trial now runs elsewhere) writes nothing.

Import cost matters (the analysis loads this): pandas and the standard library, no torch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .errors import TortError

EPOCHS_TABLE = "epochs"
TRIALS_TABLE = "trials"
MEMBERS_TABLE = "sweeps"  # the name callers use; the SQL table is `members`
DB_FILE = "store.sqlite"
LEGACY_DIR = ".legacy"

_SQL = {EPOCHS_TABLE: "epochs", TRIALS_TABLE: "trials", MEMBERS_TABLE: "members"}
_KEYS = {EPOCHS_TABLE: ["trial_id", "epoch"], TRIALS_TABLE: ["trial_id"], MEMBERS_TABLE: ["sweep", "trial_id"]}
_LEGACY = {EPOCHS_TABLE: "epochs/epochs.parquet", TRIALS_TABLE: "trials/trials.parquet",
           MEMBERS_TABLE: "sweeps/members.parquet"}
_ORDER = {EPOCHS_TABLE: "trial_id, epoch", TRIALS_TABLE: "rowid", MEMBERS_TABLE: "rowid"}

# Trial columns that only the driver that first claims a trial writes.
FIRST_WRITE = ("sweep", "started_at", "axes")
DEFAULT_LEASE_SECONDS = 60.0


def lease_seconds() -> float:
    """How long a claim lives without a heartbeat (TORT_LEASE_SECONDS overrides, for tests)."""
    try:
        return float(os.environ.get("TORT_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))
    except ValueError:
        return DEFAULT_LEASE_SECONDS


class StoreDamaged(TortError):
    """The store's database file cannot be read: truncated, overwritten, or not a database."""

    def __init__(self, path: Path, err: BaseException):
        super().__init__(f"the results store '{path}' is damaged ({err}); restore it from a copy, or move it aside "
                         f"and run again (completed trials are then recomputed)")


class ClaimLost(RuntimeError):
    """A driver wrote to a trial whose claim it no longer holds (its lease expired)."""


# ---------------------------------------------------------------------------------------------
# Files: umask-respecting atomic writes (the store's exports, `tort train`'s run files)

def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _atomic(path: Path, write) -> None:
    """Write through a hidden temp file in the same folder, fsync, rename into place: a reader sees
    the old file or the new one. The file gets the mode a plain open() would (0666 & ~umask),
    not mkstemp's 0600, so a shared store stays readable to the group."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """The one atomic Parquet writer (store exports, metrics.parquet)."""
    _atomic(path, lambda tmp: _arrow_safe(df.copy()).to_parquet(tmp, index=False))


def write_json_atomic(data: Any, path: Path) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, default=str)

    _atomic(path, write)


def write_text_atomic(text: str, path: Path) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix types (3.0 and 'x') cannot become one Arrow column: make them text."""
    for col in df.columns:
        if not (pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])):
            continue
        kind = pd.api.types.infer_dtype(df[col], skipna=True)
        if kind in ("mixed-integer-float", "integer-na"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        elif kind.startswith("mixed") or kind in ("unknown-array",):
            df[col] = [None if v is None or (isinstance(v, float) and math.isnan(v))
                       else (v if isinstance(v, str) else json.dumps(v, default=str)) for v in df[col]]
    return df


# ---------------------------------------------------------------------------------------------
# Claims

@dataclass(frozen=True)
class Owner:
    """A driver, as the claims table names it."""

    id: str
    host: str
    pid: int
    sweep: str

    @classmethod
    def new(cls, sweep: str) -> Owner:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid, sweep)


@dataclass
class Claims:
    """What `ResultStore.claim` did with each trial it was asked for."""

    claimed: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # trial id → "sweep S (pid P on H)" of the holder
    done: list[str] = field(default_factory=list)  # finished by then (another driver finished it)


# ---------------------------------------------------------------------------------------------
# The store

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _kind(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "str"


def _sample(kind: str | None) -> Any:
    return {"bool": True, "int": 1, "float": 1.0, "str": "", None: None}[kind]


def _value(v: Any) -> Any:
    """A Python value SQLite stores as is (numpy scalars → Python, NaN → NULL, others → JSON text)."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Path):
        return str(v)
    return json.dumps(v, default=str)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS epochs (trial_id TEXT NOT NULL, epoch INTEGER NOT NULL,
                                   PRIMARY KEY (trial_id, epoch)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trials (trial_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS members (sweep TEXT NOT NULL, trial_id TEXT NOT NULL, PRIMARY KEY (sweep, trial_id));
CREATE TABLE IF NOT EXISTS claims (trial_id TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT, pid INTEGER,
                                   sweep TEXT, claimed_at REAL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS columns (tbl TEXT NOT NULL, name TEXT NOT NULL, kind TEXT, PRIMARY KEY (tbl, name));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def _enter_wal(con: sqlite3.Connection, timeout: float = 60.0) -> None:
    """`PRAGMA journal_mode=WAL`, retried: SQLite answers "database is locked" at once, without its
    busy handler, when another connection holds a lock while this one changes (or first reads) the
    journal mode, as two drivers opening a new store together do."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.1)


class ResultStore:
    """The store at `root`. Reads need nothing; the first write creates the database (and imports
    a store of Parquet files written before it existed). Safe to share between threads."""

    def __init__(self, root: str | Path, lease: float | None = None):
        self.root = Path(root).expanduser().resolve()
        self.lease = lease_seconds() if lease is None else float(lease)
        self._local = threading.local()
        self._columns: dict[str, dict[str, str | None]] = {}

    @property
    def db_path(self) -> Path:
        return self.root / DB_FILE

    def path(self, table: str) -> Path:
        """Where a table lived before the database (`legacy_frames` reads it)."""
        return self.root / _LEGACY[table]

    # -- connections ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            self.root.mkdir(parents=True, exist_ok=True)
            # Created here with open()'s mode (0666 & ~umask; SQLite's own would be 0644), so a
            # group that shares the store may write it; its -wal/-shm files copy this mode. Only
            # when it does not exist: SQLite's locks are POSIX locks, which this process would lose
            # on closing *any* descriptor of an existing store, the other connections' included
            # (a reader elsewhere could then delete the write-ahead log under them).
            if not self.db_path.exists():
                try:
                    os.close(os.open(self.db_path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666))
                except FileExistsError:
                    pass  # another process created it first
            con = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=True)
            try:
                con.execute("PRAGMA busy_timeout=60000")
                _enter_wal(con)
                # WAL + NORMAL: a commit survives the process being killed; only a power cut can lose
                # the last commits (never the database).
                con.execute("PRAGMA synchronous=NORMAL")
                con.execute("PRAGMA schema_version").fetchone()  # reads the header: a damaged file fails here
            except sqlite3.DatabaseError as err:
                con.close()
                if isinstance(err, sqlite3.OperationalError):  # busy, full disk: not damage
                    raise
                raise StoreDamaged(self.db_path, err) from None
            self._local.con = con
            self._local.schema = False
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    @contextlib.contextmanager
    def _write(self):
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front, so two drivers
        queue instead of failing)."""
        con = self._connect()
        if not self._local.schema:  # a writer's first transaction: the tables (readers never write)
            con.executescript(_SCHEMA)
            self._local.schema = True
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            self._columns.clear()  # an ALTER may have been rolled back
            raise
        con.execute("COMMIT")

    def _ensure_columns(self, con: sqlite3.Connection, table: str, rows: Iterable[dict[str, Any]]) -> None:
        sql = _SQL[table]
        known = self._columns.get(sql)
        if known is None:
            known = {r[1]: None for r in con.execute(f"PRAGMA table_info({sql})")}
            known.update({n: k for n, k in con.execute("SELECT name, kind FROM columns WHERE tbl=?", (sql,))})
            self._columns[sql] = known
        for row in rows:
            for name, v in row.items():
                if name in known and (known[name] is not None or _kind(v) is None):
                    continue
                kind = _kind(v)
                if name not in known:
                    existing = {r[1] for r in con.execute(f"PRAGMA table_info({sql})")}
                    if name not in existing:  # another driver may have added it since
                        con.execute(f"ALTER TABLE {sql} ADD COLUMN {_q(name)}")
                    known[name] = None
                if kind is not None:
                    con.execute("INSERT OR IGNORE INTO columns VALUES (?, ?, ?)", (sql, name, kind))
                    known[name] = con.execute("SELECT kind FROM columns WHERE tbl=? AND name=?",
                                              (sql, name)).fetchone()[0]

    @staticmethod
    def _insert(con: sqlite3.Connection, table: str, row: dict[str, Any], verb: str = "INSERT OR IGNORE") -> int:
        names = list(row)
        cur = con.execute(f"{verb} INTO {_SQL[table]} ({', '.join(_q(n) for n in names)}) "
                          f"VALUES ({', '.join('?' * len(names))})", [_value(row[n]) for n in names])
        return cur.rowcount

    def _insert_many(self, con: sqlite3.Connection, table: str, df: pd.DataFrame) -> None:
        """Insert a frame's rows (a key already stored is kept): imports and synthetic stores."""
        if df.empty:
            return
        kinds = {c: next((_kind(v) for v in df[c] if _kind(v) is not None), None) for c in df.columns}
        self._ensure_columns(con, table, [{c: _sample(k) for c, k in kinds.items()}])
        names = list(df.columns)
        sql = (f"INSERT OR IGNORE INTO {_SQL[table]} ({', '.join(_q(n) for n in names)}) "
               f"VALUES ({', '.join('?' * len(names))})")
        for start in range(0, len(df), 50_000):
            part = df.iloc[start:start + 50_000]
            con.executemany(sql, ([_value(v) for v in row] for row in part.itertuples(index=False, name=None)))

    def bulk_insert(self, table: str, df: pd.DataFrame) -> None:
        """`_insert_many` in one transaction (benchmarks, imports)."""
        with self._write() as con:
            self._insert_many(con, table, df)

    @staticmethod
    def _update(con: sqlite3.Connection, table: str, key: dict[str, Any], fields: dict[str, Any]) -> None:
        if not fields:
            return
        sets = ", ".join(f"{_q(n)}=?" for n in fields)
        where = " AND ".join(f"{_q(n)}=?" for n in key)
        con.execute(f"UPDATE {_SQL[table]} SET {sets} WHERE {where}",
                    [_value(v) for v in fields.values()] + list(key.values()))

    # -- reading --------------------------------------------------------------------------------
    def _legacy_pending(self) -> bool:
        """Parquet tables of an older store that have not been imported into the database."""
        return any((self.root / rel).exists() for rel in _LEGACY.values())

    def legacy_frames(self) -> dict[str, pd.DataFrame]:
        out = {}
        for table, rel in _LEGACY.items():
            path = self.root / rel
            try:
                out[table] = pd.read_parquet(path) if path.exists() else pd.DataFrame()
            except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
                raise StoreDamaged(path, str(err).splitlines()[0][:200]) from None
        return out

    def read_all(self) -> dict[str, pd.DataFrame]:
        """epochs, trials and members from one snapshot (a consistent view while drivers write)."""
        if self._legacy_pending() and not self.db_path.exists():
            return self.legacy_frames()
        if not self.db_path.exists():
            return {t: pd.DataFrame() for t in _SQL}
        con = self._connect()
        con.execute("BEGIN")  # one read transaction: every table from the same snapshot
        try:
            out = {t: self._read(con, t) for t in _SQL}
        finally:
            con.execute("COMMIT")
        if self._legacy_pending():  # written before an import finished: both halves
            for t, df in self.legacy_frames().items():
                frames = [f for f in (df, out[t]) if not f.empty]
                out[t] = pd.concat(frames, ignore_index=True) if len(frames) > 1 else (frames[0] if frames else df)
        return out

    def read(self, table: str) -> pd.DataFrame:
        """One table as a DataFrame (empty if there is none)."""
        if table not in _SQL:
            raise KeyError(f"unknown table '{table}'; one of {', '.join(_SQL)}")
        if not self.db_path.exists():
            return self.legacy_frames()[table] if self._legacy_pending() else pd.DataFrame()
        if self._legacy_pending():
            return self.read_all()[table]
        return self._read(self._connect(), table)

    def _read(self, con: sqlite3.Connection, table: str, where: str = "", args: tuple = ()) -> pd.DataFrame:
        sql = _SQL[table]
        if con.execute("SELECT 1 FROM sqlite_master WHERE name='columns'").fetchone() is None:
            return pd.DataFrame()  # created by a writer that has not written yet
        cur = con.execute(f"SELECT * FROM {sql} {where} ORDER BY {_ORDER[table]}", args)
        names = [d[0] for d in cur.description]
        chunks = []
        while rows := cur.fetchmany(100_000):
            chunks.append(pd.DataFrame.from_records(rows, columns=names, coerce_float=True))
        if not chunks:
            return pd.DataFrame()
        df = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
        kinds = dict(con.execute("SELECT name, kind FROM columns WHERE tbl=?", (sql,)).fetchall())
        for name, kind in kinds.items():
            if kind == "bool" and name in df.columns and df[name].dtype != bool:
                s = df[name]
                df[name] = s.astype(bool) if s.notna().all() else s.map(
                    lambda v: None if v is None or v != v else bool(v)).astype(object)
        return df

    def statuses(self) -> dict[str, str]:
        """trial_id → status of its row."""
        trials = self.read(TRIALS_TABLE)
        if trials.empty or "status" not in trials.columns:
            return {}
        return dict(zip(trials["trial_id"].astype(str), trials["status"].astype(str)))

    def epochs_of(self, trial_id: str) -> pd.DataFrame:
        if not self.db_path.exists() or self._legacy_pending():
            epochs = self.read(EPOCHS_TABLE)
            return epochs[epochs["trial_id"] == trial_id].sort_values("epoch") if not epochs.empty else epochs
        return self._read(self._connect(), EPOCHS_TABLE, "WHERE trial_id=?", (trial_id,))

    # -- generic writes ----------------------------------------------------------------------------
    def upsert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows; a row whose key is already stored is updated with the given columns (the
        last write wins). For imports and tests: a sweep writes through claim/add_epochs/finish."""
        if not rows:
            return
        self.migrate()
        keys = _KEYS[table]
        with self._write() as con:
            self._ensure_columns(con, table, rows)
            for row in rows:
                if not self._insert(con, table, row):
                    self._update(con, table, {k: row[k] for k in keys},
                                 {k: v for k, v in row.items() if k not in keys})

    def add_members(self, rows: list[dict[str, Any]]) -> None:
        """A sweep's membership rows; a (sweep, trial) already stored keeps its first row."""
        if not rows:
            return
        self.migrate()
        with self._write() as con:
            self._ensure_columns(con, MEMBERS_TABLE, rows)
            for row in rows:
                self._insert(con, MEMBERS_TABLE, row)

    def forget(self, trial_ids: list[str]) -> None:
        """Drop every epoch and trial row of these trials (before recomputing them: --force)."""
        self.migrate()
        with self._write() as con:
            for tid in trial_ids:
                con.execute("DELETE FROM epochs WHERE trial_id=?", (tid,))
                con.execute("DELETE FROM trials WHERE trial_id=?", (tid,))

    # -- claims -----------------------------------------------------------------------------------
    def claim(self, trials: list[dict[str, Any]], owner: Owner, done: set[str], fresh: bool = False) -> Claims:
        """Claim trials for `owner` in one transaction: a trial held by another driver whose lease
        has not expired is left to it, a trial whose status is in `done` is skipped. A claimed trial
        gets its row (the given columns, status running, started_at, attempts 1) or, if it has one,
        status running, one more attempt, and one more interruption if its last driver stopped
        while it was running. `fresh` (--force): its epoch and trial rows are replaced.

        `trials`: one row per trial, `trial_id` plus the columns a new row starts with."""
        self.migrate()
        out = Claims()
        now = time.time()
        with self._write() as con:
            self._ensure_columns(con, TRIALS_TABLE, trials)
            self._ensure_columns(con, TRIALS_TABLE, [{"status": "running", "attempts": 1, "interruptions": 0,
                                                      "started_at": "", "finished_at": "", "error": ""}])
            for row in trials:
                tid = row["trial_id"]
                held = con.execute("SELECT owner, sweep, pid, host FROM claims WHERE trial_id=? AND expires_at>?",
                                   (tid, now)).fetchone()
                if held is not None and held[0] != owner.id and not _dead_here(held[3], held[2]):
                    out.held[tid] = f"sweep '{held[1]}' (pid {held[2]} on {held[3]})"
                    continue
                if held is not None and held[0] == owner.id:  # ours already (deferred to a later round)
                    con.execute("UPDATE claims SET expires_at=? WHERE trial_id=?", (now + self.lease, tid))
                    out.claimed.append(tid)
                    continue
                prev = con.execute("SELECT status FROM trials WHERE trial_id=?", (tid,)).fetchone()
                if prev is not None and not fresh and prev[0] in done:
                    out.done.append(tid)
                    continue
                con.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (tid, owner.id, owner.host, owner.pid, owner.sweep, now, now + self.lease))
                if fresh and prev is not None:
                    con.execute("DELETE FROM epochs WHERE trial_id=?", (tid,))
                    con.execute("DELETE FROM trials WHERE trial_id=?", (tid,))
                    prev = None
                if prev is None:
                    self._insert(con, TRIALS_TABLE, {**row, "status": "running", "attempts": 1, "interruptions": 0,
                                                      "started_at": _iso(now)})
                else:
                    con.execute("UPDATE trials SET attempts=COALESCE(attempts, 1)+1, "
                                "interruptions=COALESCE(interruptions, 0)+(CASE WHEN status='running' THEN 1 ELSE 0 END), "
                                "status='running', error=NULL, finished_at=NULL WHERE trial_id=?", (tid,))
                out.claimed.append(tid)
        return out

    def _check_claim(self, con: sqlite3.Connection, trial_id: str, owner: Owner) -> None:
        row = con.execute("SELECT owner FROM claims WHERE trial_id=?", (trial_id,)).fetchone()
        if row is None or row[0] != owner.id:
            raise ClaimLost(f"trial {trial_id}: this driver's claim has expired and "
                            f"{'nobody' if row is None else 'another driver'} holds it now")
        con.execute("UPDATE claims SET expires_at=? WHERE trial_id=?", (time.time() + self.lease, trial_id))

    def heartbeat(self, owner: Owner) -> int:
        """Renew every claim of `owner`; returns how many it holds."""
        with self._write() as con:
            return con.execute("UPDATE claims SET expires_at=? WHERE owner=?",
                               (time.time() + self.lease, owner.id)).rowcount

    def release(self, trial_ids: Iterable[str], owner: Owner) -> None:
        """Give back claims (a trial this driver will not finish: another may take it at once)."""
        with self._write() as con:
            for tid in trial_ids:
                con.execute("DELETE FROM claims WHERE trial_id=? AND owner=?", (tid, owner.id))

    def holders(self) -> dict[str, str]:
        """trial id → owner, for the claims whose lease has not expired."""
        if not self.db_path.exists():
            return {}
        rows = self._connect().execute("SELECT trial_id, owner FROM claims WHERE expires_at>?", (time.time(),))
        return dict(rows.fetchall())

    def add_epochs(self, trial_id: str, records: list[dict[str, Any]], owner: Owner) -> int:
        """Store epoch records of a claimed trial; an epoch already stored is kept as it is.
        Returns how many rows were new. Raises ClaimLost if `owner` no longer holds the trial."""
        rows = [{"trial_id": trial_id, **{k: v for k, v in r.items() if k != "trial_id"}} for r in records]
        with self._write() as con:
            self._check_claim(con, trial_id, owner)
            self._ensure_columns(con, EPOCHS_TABLE, rows)
            return sum(self._insert(con, EPOCHS_TABLE, row) for row in rows)

    def update_trial(self, trial_id: str, fields: dict[str, Any], owner: Owner, release: bool = False) -> None:
        """Update a claimed trial's row (never its FIRST_WRITE columns); `release` gives the claim
        back in the same transaction (the trial is finished)."""
        fields = {k: v for k, v in fields.items() if k not in FIRST_WRITE and k != "trial_id"}
        with self._write() as con:
            self._check_claim(con, trial_id, owner)
            self._ensure_columns(con, TRIALS_TABLE, [fields])
            self._update(con, TRIALS_TABLE, {"trial_id": trial_id}, fields)
            if release:
                con.execute("DELETE FROM claims WHERE trial_id=? AND owner=?", (trial_id, owner.id))

    def add_attempt(self, trial_id: str, owner: Owner) -> None:
        """A retry of a claimed trial (Tune restarted it after a failure)."""
        with self._write() as con:
            self._check_claim(con, trial_id, owner)
            con.execute("UPDATE trials SET attempts=COALESCE(attempts, 1)+1 WHERE trial_id=?", (trial_id,))

    # -- legacy Parquet stores --------------------------------------------------------------------
    def migrate(self) -> None:
        """Import a store of Parquet files (written before the database existed) once, then move
        the files to `.legacy/`. Epoch rows keep their metrics; each trial's configuration and
        provenance go to its trial row (a trial that had epochs but no row becomes `running`:
        its driver stopped, and a sweep that contains it resumes it)."""
        if not self._legacy_pending():
            return
        with self._write() as con:
            done = con.execute("SELECT value FROM meta WHERE key='migrated'").fetchone()
            if done is None:
                self._import_legacy(con)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('migrated', ?)", (_iso(time.time()),))
        # The database holds everything now; the files move aside (a reader of the folders would
        # otherwise see a store that no longer changes).
        for rel in _LEGACY.values():
            src = self.root / rel
            if src.exists():
                dest = self.root / LEGACY_DIR / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)

    def _import_legacy(self, con: sqlite3.Connection) -> None:
        frames = self.legacy_frames()
        epochs, trials, members = frames[EPOCHS_TABLE], frames[TRIALS_TABLE], frames[MEMBERS_TABLE]
        if not trials.empty:
            trials = trials.drop_duplicates("trial_id", keep="last")
            if "attempts" not in trials.columns:
                trials = trials.assign(attempts=1)
            self._insert_many(con, TRIALS_TABLE, trials)
        if not epochs.empty:
            epochs = epochs.drop_duplicates(["trial_id", "epoch"], keep="last")
            meta_cols = [c for c in epochs.columns if _is_trial_column(c)]
            known = set(trials["trial_id"]) if not trials.empty else set()
            orphans = epochs[~epochs["trial_id"].isin(known)].drop_duplicates("trial_id", keep="last")
            if not orphans.empty:  # a trial whose driver stopped: its row comes from its epochs
                self._insert_many(con, TRIALS_TABLE, orphans[["trial_id", *meta_cols]].assign(status="running",
                                                                                                 attempts=1))
            self._insert_many(con, EPOCHS_TABLE, epochs[[c for c in epochs.columns if c not in meta_cols]])
        if not members.empty:
            self._insert_many(con, MEMBERS_TABLE, members)


def _is_trial_column(name: str) -> bool:
    """A legacy epoch row's column that belongs to its trial (configuration, provenance, identity)."""
    from .config import known_keys

    if name in ("sweep", "sweeps", "axes", "train_size", "test_size") or name.startswith(("git.", "version.", "hw.")):
        return True
    return name in _config_keys(known_keys)


_CONFIG_KEYS: set[str] = set()


def _config_keys(known_keys) -> set[str]:
    if not _CONFIG_KEYS:
        _CONFIG_KEYS.update(known_keys())
    return _CONFIG_KEYS


def _dead_here(host: str | None, pid: int | None) -> bool:
    """A claim's holder is a process on this machine that no longer exists (its lease need not
    run out: a killed driver's trials resume at once)."""
    if host != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _iso(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


class Heartbeat:
    """Renews a driver's claims every `lease / 4` seconds on a thread of its own, while running."""

    def __init__(self, store: ResultStore, owner: Owner):
        self.store = ResultStore(store.root, lease=store.lease)  # its own connection
        self.owner = owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tort-store-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.store.lease / 4):
            with contextlib.suppress(sqlite3.Error):
                self.store.heartbeat(self.owner)
        self.store.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def summarize_records(status: str, records: list[dict[str, Any]], error: str | None = None,
                      meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's summary from its epoch records: status, error, epochs, final and best metrics,
    `wall_seconds` (sum of epoch times) and mean `samples_per_s` (no torch: the sweep driver uses it)."""
    final = records[-1] if records else {}
    out: dict[str, Any] = {**(meta or {}), "status": status, "error": error, "epochs": len(records)}
    for key in ("test_top1", "knn_top1", "loss"):
        values = [r[key] for r in records if key in r]
        if values:
            out[f"final_{key}"] = final.get(key)
            out[f"best_{key}"] = min(values) if key == "loss" else max(values)
    if records:
        out["wall_seconds"] = sum(r.get("epoch_seconds", 0.0) for r in records)
        out["samples_per_s"] = sum(r.get("samples_per_s", 0.0) for r in records) / len(records)
    return out


# ---------------------------------------------------------------------------------------------
# Readers

def read_table(results_dir: str | Path, table: str) -> pd.DataFrame:
    """One table of the store at `results_dir` ("epochs", "trials" or "sweeps"), whichever way
    it was written."""
    return ResultStore(results_dir).read(table)


# The files `export_parquet` writes, one per table.
EXPORT_FILES = {table: f"{name}.parquet" for table, name in _SQL.items()}
# Columns whose values are paths on the machine that wrote the store (`portable` keeps their last part).
PATH_COLUMNS = ("data.root", "model.init", "error_file", "spec")


def export_parquet(results_dir: str | Path, dest: str | Path, portable: bool = False) -> dict[str, Path]:
    """Write the store's three tables, from one snapshot, as `dest/{epochs,trials,members}.parquet`.

    portable: paths of the machine that ran the trials (`PATH_COLUMNS`, and absolute paths inside
    error messages) are cut to their last component, so that an export can be published without
    them. Nothing an analysis reads changes: an ImageFolder dataset is named by its folder's name
    (`imagefolder:<name>`) and identified by `data.fingerprint`."""
    frames = ResultStore(results_dir).read_all()
    out = {}
    for table, df in frames.items():
        path = Path(dest) / EXPORT_FILES[table]
        write_parquet_atomic(_portable(df) if portable else df, path)
        out[table] = path
    return out


def is_export(path: str | Path) -> bool:
    """Whether `path` is a folder that `export_parquet` wrote (its tables, no database)."""
    p = Path(path)
    return (p / EXPORT_FILES[TRIALS_TABLE]).is_file() and not (p / DB_FILE).exists()


def read_export(path: str | Path) -> dict[str, pd.DataFrame]:
    """The three tables of an `export_parquet` folder, keyed as `ResultStore.read_all` keys them."""
    p = Path(path)
    return {table: pd.read_parquet(p / name) if (p / name).is_file() else pd.DataFrame()
            for table, name in EXPORT_FILES.items()}


_ABS_PATH = re.compile(r"(?<![\w.~])(?:~|/)[^\s'\":,;()]*/([^\s'\":,;()/]+)")


def _portable(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in df.columns:
        if not (pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])):
            continue
        if col in PATH_COLUMNS:
            df[col] = [Path(v).name if isinstance(v, str) and v else v for v in df[col]]
        elif col == "error":
            df[col] = [_ABS_PATH.sub(r"\1", v) if isinstance(v, str) else v for v in df[col]]
    return df


def _with_membership(df: pd.DataFrame, members: pd.DataFrame, sweep: str | None) -> pd.DataFrame:
    if df.empty:
        return df
    if not members.empty:
        by_trial = members.groupby("trial_id")["sweep"].agg(lambda s: json.dumps(sorted(set(s)))).to_dict()
        own = df["sweep"] if "sweep" in df.columns else pd.Series([None] * len(df), index=df.index)
        df = df.copy()
        df["sweeps"] = [by_trial.get(t, json.dumps([s] if isinstance(s, str) else []))
                        for t, s in zip(df["trial_id"], own)]
    if sweep is None:
        return df
    ids = set(members.loc[members["sweep"] == sweep, "trial_id"]) if not members.empty else set()
    if "sweep" in df.columns:
        ids |= set(df.loc[df["sweep"] == sweep, "trial_id"])
    out = df[df["trial_id"].isin(ids)].copy()
    out["sweep"] = sweep
    return out.reset_index(drop=True)


def load_epochs(results_dir: str | Path, sweep: str | None = None) -> pd.DataFrame:
    """Per-epoch rows of the store at `results_dir` (empty DataFrame if there are none).

    One row per (trial_id, epoch): `trial_id`, `epoch`, and every metric of the epoch record
    (`loss`, `loss_<name>`, `test_top1`, `knn_top1`, `lr`, ...). A trial's configuration is in
    its trials row (join on `trial_id`); stores written before the database also carry it here.
    With `sweep`, only the trials that sweep contains, with a `sweep` column set to that name.
    """
    store = ResultStore(results_dir)
    if sweep is None:
        return store.read(EPOCHS_TABLE)
    frames = store.read_all()
    trials = frames[TRIALS_TABLE]
    epochs = frames[EPOCHS_TABLE]
    if not trials.empty and "sweep" in trials.columns and "sweep" not in epochs.columns and not epochs.empty:
        epochs = epochs.merge(trials[["trial_id", "sweep"]], on="trial_id", how="left")
    return _with_membership(epochs, frames[MEMBERS_TABLE], sweep)


def load_trials(results_dir: str | Path, sweep: str | None = None) -> pd.DataFrame:
    """One row per trial a sweep has started (empty DataFrame if there are none).

    Columns: `sweep` (the sweep that computed it), `sweeps` (JSON list of every sweep that contains
    the trial), `trial_id`, `status` (running | completed | failed | stopped), `error`,
    `epochs_done`, `total_epochs`, `final_<m>` / `best_<m>` for test_top1, knn_top1 and loss,
    `wall_seconds` (sum of epoch times), `elapsed_seconds` (the last attempt's start to end,
    start-up included), `samples_per_s`, `attempts` (every start: retries and resumes),
    `interruptions` (times its driver stopped while it ran), `started_at` (first start),
    `finished_at`, `train_size`, `test_size`, `num_classes`, `parameters`, `axes` (JSON of the
    axis values of the sweep that computed it), every config key, `git.*`, `version.*`, `hw.*`
    (the last attempt's), `timing.*`. `sweep` filters as in `load_epochs`.
    """
    frames = ResultStore(results_dir).read_all()
    return _with_membership(frames[TRIALS_TABLE], frames[MEMBERS_TABLE], sweep)


def load_members(results_dir: str | Path) -> pd.DataFrame:
    """(sweep, trial_id) rows: `axes` (JSON of the trial's axis values in that sweep), `label`,
    `seed`, `dataset`, `spec` (the spec file), `added_at`."""
    return ResultStore(results_dir).read(MEMBERS_TABLE)
