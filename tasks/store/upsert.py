"""Store canonical frames: idempotent upserts keyed by each table's primary key, with change detection and history.

- A row's `row_hash` covers every canonical column. A row whose hash is unchanged is not written at all, so a rerun
  of the same export writes nothing; `last_seen_run` is therefore the run that last inserted or changed the row.
- Every change of a tracked field (status, dates, limits; see TRACKED) is written to `change_history` with the run
  that saw it, in the same transaction as the upsert. A new suspension is recorded as "pause added".
- Rows missing from a later export are kept: nothing is ever deleted here.
- A new or changed row unsettles its group (tasks/store/settled.py) in the same transaction: its case (every row with
  its case_id) and its project, before and after the change, are evaluated again by the next run.
- `read_open_tables` reads back only what an incremental run evaluates: the rows of the open case groups, the open
  projects, and the cases and suspensions of those projects' members; `read_subject_tables` only what one case's,
  push's or project's clocks need (`permitwatch explain`).
- SQLite: one executemany of INSERT .. ON CONFLICT DO UPDATE per batch. PostgreSQL: COPY into a temporary table,
  then one INSERT .. SELECT .. ON CONFLICT DO UPDATE.

The hash uses polars' row hashing, which is stable within a polars version; after a polars upgrade every row is
rewritten once (the history is unaffected: it compares values, not hashes).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time

import polars as pl
from sqlalchemy import Connection, Engine, func, select

from config.canonical import TABLES
from schemas.contracts import canonical_schema, key_columns
from schemas.database import in_batches
from schemas.tables import CANONICAL_TABLES
from tasks.ingest.load import ProgressCallback

BATCH_ROWS = 50_000
BULK_ROWS = 100_000  # inserting at least this many rows, and more than the table holds: rebuild indexes after
_SQLITE_BULK_CACHE_KIB = 262_144
_HASH_WIDTH = 20
KEY_SEPARATOR = "|"
_HASH_SEED = 0x5EED_0001

# Fields whose changes are history: a change of status or date, or of a limit (the clock's inputs).
TRACKED: dict[str, tuple[str, ...]] = {
    "cases": ("status", "accepted_at", "completed_at", "limit_days", "limit_kind", "unit_code", "matter_code"),
    "steps": ("unit_code", "started_at", "ended_at", "limit_days"),
    "suspensions": ("ended_at", "limit_days"),
    "projects": ("category", "lead_unit_code"),
    "deferrals": ("due_days", "due_date", "supplied_at"),
    "pushes": ("supervisor_unit_code", "pushed_at", "claimed_at"),
}
# Stored values a change replaces that name another group to unsettle: a push moved to another case. (A case moved to
# another project needs nothing here: its stored row still names the old project when the groups are unsettled.)
FORMER_GROUP: dict[str, tuple[str, ...]] = {"pushes": ("case_id",)}
# Tables where a new row is itself an event worth a history line.
INSERT_EVENTS = {"suspensions": "pause added"}

HISTORY_COLUMNS = ("run_id", "table_name", "row_key", "field", "old_value", "new_value")


@dataclass(frozen=True)
class StoreStats:
    table: str
    inserted: int
    updated: int
    unchanged: int
    history: int = 0

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def as_dict(self) -> dict[str, int]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "history": self.history,
        }


# ---------------------------------------------------------------------------------------------------- value formats


def _text_values(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Every canonical column as the text the database stores (and the hash and the history compare)."""
    schema = canonical_schema(table)
    return frame.select(_as_text(name, dtype) for name, dtype in schema.items())


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.Date:
        return column.dt.strftime("%Y-%m-%d").alias(name)
    if isinstance(dtype, pl.Datetime):
        # SQLAlchemy's SQLite DateTime storage format, which PostgreSQL also accepts.
        return column.dt.strftime("%Y-%m-%d %H:%M:%S.%6f").alias(name)
    return column.cast(pl.String).alias(name)


def row_hashes(frame: pl.DataFrame, table: str) -> pl.Series:
    """A 64-bit hash per row over all canonical columns (nulls distinct from empty strings), as 20 digits.

    It is only ever compared with the same row's previous hash, so 64 bits leave a 2**-64 chance of missing a change.
    """
    return _hashes(_text_values(frame, table))


def _hashes(texts: pl.DataFrame) -> pl.Series:
    return texts.hash_rows(seed=_HASH_SEED).cast(pl.String).str.zfill(_HASH_WIDTH).alias("row_hash")


def _row_key(table: str) -> pl.Expr:
    """The key as one text ("C1", "C1|2", "C1|补正|2023-01-20"), over a frame of stored text values."""
    return pl.concat_str([pl.col(name).cast(pl.String) for name in key_columns(table)], separator=KEY_SEPARATOR)


# ------------------------------------------------------------------------------------------------------- reading


def _fetch(
    connection: Connection, sql: str, schema: dict[str, pl.DataType], parameters: Sequence[str] = ()
) -> pl.DataFrame:
    """Run `sql` and return its rows as text-typed columns (integers kept as Int64). `parameters` fill the
    placeholders _placeholders wrote into `sql`."""
    raw_connection = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        buffer = io.BytesIO()
        copy_sql = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"
        with raw_connection.cursor() as cursor, cursor.copy(copy_sql, parameters or None) as copy:
            for block in copy:
                buffer.write(block)
        if buffer.tell() == 0:
            return pl.DataFrame(schema=schema)
        return pl.read_csv(buffer.getvalue(), has_header=False, new_columns=list(schema), schema=schema)
    cursor = raw_connection.cursor()
    try:
        cursor.execute(sql, parameters)
        frames = []
        while rows := cursor.fetchmany(BATCH_ROWS):
            frames.append(pl.DataFrame(rows, schema=schema, orient="row"))
    finally:
        cursor.close()
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def _text_schema(table: str, columns: Sequence[str]) -> dict[str, pl.DataType]:
    canonical = canonical_schema(table)
    return {name: (pl.Int64() if canonical.get(name) == pl.Int32 else pl.String()) for name in columns}


def _from_text(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Database text back to canonical dtypes."""
    schema = canonical_schema(table)
    columns = []
    for name in frame.columns:
        dtype = schema.get(name)
        column = pl.col(name)
        if dtype == pl.Date:
            column = column.str.slice(0, 10).str.to_date("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime):
            column = column.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
        elif dtype is not None:
            column = column.cast(dtype)
        columns.append(column.alias(name))
    return frame.select(columns)


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _placeholders(connection: Connection, count: int) -> str:
    """`count` bound-parameter markers in the driver's own style (psycopg's COPY merges them client-side)."""
    return ", ".join(["%s" if connection.dialect.name == "postgresql" else "?"] * count)


def read_tables(engine: Engine, tables: Sequence[str] = TABLES) -> dict[str, pl.DataFrame]:
    """The stored canonical frames (cases, steps, suspensions, projects, deferrals, pushes), canonical dtypes."""
    result = {}
    with engine.connect() as connection:
        for table in tables:
            names = list(canonical_schema(table))
            sql = f"SELECT {_quoted(names)} FROM {table} ORDER BY {_quoted(key_columns(table))}"
            result[table] = _from_text(_fetch(connection, sql, _text_schema(table, names)), table)
    return result


def tables_written_by(
    engine: Engine, run_id: int, written: Mapping[str, Sequence[pl.DataFrame]]
) -> dict[str, pl.DataFrame]:
    """The stored tables that run `run_id` wrote whole, taken from the frames it stored (`written`, by table) instead
    of being read back: exactly what read_tables gives for them. A table qualifies when every stored row was last
    written by this run and it holds as many rows as `written` does (so no two frames shared a key), and the frames
    have the canonical dtypes, whose stored text reads back to the same values. That is the first load of a
    history: on a million cases it saves reading 3.6 M rows back from the database (10 s on SQLite)."""
    result = {}
    with engine.connect() as connection:
        for table, frames in written.items():
            schema = canonical_schema(table)
            if not frames or any(
                frame.schema.get(name, dtype) != dtype for frame in frames for name, dtype in schema.items()
            ):
                continue
            expected = sum(frame.height for frame in frames)
            stored, older = connection.exec_driver_sql(
                f"SELECT count(*), count(CASE WHEN last_seen_run = {int(run_id)} THEN NULL ELSE 1 END) FROM {table}"
            ).one()
            if stored != expected or older:
                continue
            complete = [_with_all_columns(frame, table) for frame in frames]
            result[table] = pl.concat(complete).sort(key_columns(table), maintain_order=True)
    return result


def _with_all_columns(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """The canonical columns in order; an optional column the frame lacks (one added later, such as
    cases.platform_due_date) is null, as it is stored."""
    return frame.select(
        pl.col(name) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in canonical_schema(table).items()
    )


def read_matching(engine: Engine, table: str, column: str, values: Sequence[str]) -> pl.DataFrame:
    """The stored rows of `table` whose `column` is one of `values`, as read_tables gives them (canonical dtypes, key
    order): a few groups' rows, not the table."""
    names = list(canonical_schema(table))
    schema = _text_schema(table, names)
    frames = [pl.DataFrame(schema=schema)]
    with engine.connect() as connection:
        for chunk in in_batches(list(dict.fromkeys(values))):
            sql = (
                f'SELECT {_quoted(names)} FROM {table} WHERE "{column}" IN ({_placeholders(connection, len(chunk))})'
                f" ORDER BY {_quoted(key_columns(table))}"
            )
            frames.append(_fetch(connection, sql, schema, chunk))
    return _from_text(pl.concat(frames), table).sort(key_columns(table), maintain_order=True)


# What each kind of subject's id is: the table and column that hold it.
_SUBJECT_LOOKUPS = {
    "case": ("cases", "case_id"),
    "claim": ("pushes", "push_id"),
    "project": ("projects", "project_code"),
}


def read_subject_tables(engine: Engine, kind: str, subject_id: str) -> tuple[str, dict[str, pl.DataFrame]] | None:
    """What `permitwatch explain` builds a subject's clocks from: the kind an id names (`kind` empty: looked up as a
    case id, then a push id, then a project code; None when nothing has it) and the stored rows its clocks need:
    a case with its project, steps, suspensions, deferrals and pushes; a push (claim) with its case; a project with
    all its cases and theirs."""
    for candidate in [kind] if kind else list(_SUBJECT_LOOKUPS):
        table, column = _SUBJECT_LOOKUPS[candidate]
        rows = read_matching(engine, table, column, [subject_id])
        if rows.height or kind:
            break
    else:
        return None
    if candidate == "claim":
        cases = read_matching(engine, "cases", "case_id", rows["case_id"].to_list())
        return candidate, {"cases": cases, "pushes": rows}
    if candidate == "project":
        projects, cases = rows, read_matching(engine, "cases", "project_code", [subject_id])
    else:
        cases = rows
        projects = read_matching(engine, "projects", "project_code", cases["project_code"].drop_nulls().to_list())
    case_ids = cases["case_id"].to_list()
    by_case = {table: read_matching(engine, table, "case_id", case_ids)
               for table in ("steps", "suspensions", "deferrals", "pushes")}
    return candidate, {"cases": cases, "projects": projects, **by_case}


# read_open_tables' queries start from the (small) open groups and reach the rows through the tables' keys and
# indexes, so that their cost follows the open groups, not the history. Each is a union of disjoint parts: the rows of
# open cases (flag 1) and, for cases and suspensions, the rows of open projects' other members (flag 0).
_OPEN_CASE_ROWS = "JOIN open_groups o ON o.kind = 'case' AND o.group_id = t.case_id"
_MEMBER_ROWS = (
    "JOIN open_groups p ON p.kind = 'project' AND p.group_id = m.project_code "
    "WHERE NOT EXISTS (SELECT 1 FROM open_groups o WHERE o.kind = 'case' AND o.group_id = m.case_id)"
)
_READ_OPEN = {
    "cases": [(1, _OPEN_CASE_ROWS), (0, f"JOIN cases m ON m.case_id = t.case_id {_MEMBER_ROWS}")],
    "steps": [(1, _OPEN_CASE_ROWS)],
    "suspensions": [(1, _OPEN_CASE_ROWS), (0, f"JOIN cases m ON m.case_id = t.case_id {_MEMBER_ROWS}")],
    "projects": [(1, "JOIN open_groups o ON o.kind = 'project' AND o.group_id = t.project_code")],
    "deferrals": [(1, _OPEN_CASE_ROWS)],
    "pushes": [(1, _OPEN_CASE_ROWS)],
}
OPEN_FLAG = "__open"


def read_open_tables(engine: Engine, tables: Sequence[str] = TABLES) -> dict[str, pl.DataFrame]:
    """What an incremental run builds its clocks from: every row of an open case group, the open projects, and the
    cases and suspensions of those projects' members (a project clock needs them all). Canonical dtypes plus
    OPEN_FLAG: whether the row's own group (its case; for projects, the project) is open, as opposed to read only
    for a project's sake."""
    result = {}
    with engine.connect() as connection:
        for table in tables:
            names = list(canonical_schema(table))
            columns = ", ".join(f't."{name}" AS "{name}"' for name in names)  # named, for the union's ORDER BY
            parts = [f"SELECT {columns}, {flag} FROM {table} t {joins}" for flag, joins in _READ_OPEN[table]]
            sql = f"{' UNION ALL '.join(parts)} ORDER BY {_quoted(key_columns(table))}"
            schema = {**_text_schema(table, names), OPEN_FLAG: pl.Int64()}
            frame = _fetch(connection, sql, schema)
            result[table] = _from_text(frame.drop(OPEN_FLAG), table).with_columns(
                frame[OPEN_FLAG].cast(pl.Boolean)
            )
    return result


def count_rows(engine: Engine, tables: Sequence[str] = TABLES) -> dict[str, int]:
    """The stored rows of each table."""
    with engine.connect() as connection:
        return {
            table: int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()) for table in tables
        }


def stored_watermark(engine: Engine, table: str, column: str) -> datetime | None:
    """The newest stored value of a date or datetime column (a sql source's watermark), None for an empty table."""
    with engine.connect() as connection:
        newest = connection.execute(select(func.max(CANONICAL_TABLES[table].c[column]))).scalar()
    if newest is None or isinstance(newest, datetime):
        return newest
    return datetime.combine(newest, time())


def read_case_reference(engine: Engine) -> pl.DataFrame:
    """case_id, accepted_at, completed_at of the stored cases (to check suspensions against their case's life)."""
    names = ["case_id", "accepted_at", "completed_at"]
    with engine.connect() as connection:
        frame = _fetch(connection, f"SELECT {_quoted(names)} FROM cases", _text_schema("cases", names))
    return _from_text(frame, "cases")


# ------------------------------------------------------------------------------------------------------- writing


def store_table(
    engine: Engine,
    table: str,
    frame: pl.DataFrame,
    run_id: int | None,
    progress: ProgressCallback | None = None,
) -> StoreStats:
    """Upsert a canonical frame (unique keys, as a LoadResult's `accepted`); unchanged rows are not written."""
    keys = key_columns(table)
    tracked = list(TRACKED[table])
    if frame.height == 0:
        return StoreStats(table, 0, 0, 0)
    if frame.select(pl.struct(keys).is_duplicated().any()).item():
        raise ValueError(f"{table}: duplicate keys {keys} in the frame to store; a load rejects them first")
    texts = _text_values(_with_all_columns(frame, table), table)
    incoming = texts.with_columns(
        _hashes(texts).alias("row_hash"),
    ).with_columns(_row_key(table).alias("__key"))
    with engine.begin() as connection:
        compared = incoming.join(_stored_hashes(connection, table), on="__key", how="left")
        new = compared.filter(pl.col("__old_hash").is_null())
        changed = compared.filter(pl.col("__old_hash").is_not_null() & (pl.col("__old_hash") != pl.col("row_hash")))
        unchanged = compared.height - new.height - changed.height
        if changed.height:
            looked_up = list(dict.fromkeys([*tracked, *FORMER_GROUP.get(table, ())]))
            changed = changed.join(_stored_values(connection, table, changed, looked_up), on="__key", how="left")
        history = _history(table, new, changed, tracked, run_id)
        _unsettle(connection, table, pl.concat([new, changed], how="diagonal_relaxed"))
        columns = [*texts.columns, "row_hash"]
        with _bulk_writing(connection, table, bulk=new.height >= BULK_ROWS and new.height >= unchanged):
            # In key order, the primary-key B-tree is appended to rather than split at random.
            _insert(connection, table, new.select(columns).sort(keys), run_id, progress)
            _upsert(connection, table, changed.select(columns), run_id, progress)
        _append(connection, "change_history", history, progress=None)
    return StoreStats(table, new.height, changed.height, unchanged, history.height)


def _stored_hashes(connection: Connection, table: str) -> pl.DataFrame:
    """__key, __old_hash of every stored row. SQLite hands each row over as one string (key, unit separator, hash),
    which halves the Python objects a million-row table costs."""
    keys = key_columns(table)
    if connection.dialect.name == "postgresql":
        schema = {**_text_schema(table, keys), "row_hash": pl.String()}
        stored = _fetch(connection, f"SELECT {_quoted([*keys, 'row_hash'])} FROM {table}", schema)
        return stored.select(_row_key(table).alias("__key"), pl.col("row_hash").alias("__old_hash"))
    key_sql = f" || '{KEY_SEPARATOR}' || ".join(f'"{name}"' for name in keys)
    stored = _fetch(connection, f"SELECT {key_sql} || char(31) || row_hash FROM {table}", {"packed": pl.String()})
    packed = pl.col("packed")
    return stored.select(
        packed.str.head(pl.col("packed").str.len_chars() - _HASH_WIDTH - 1).alias("__key"),
        packed.str.tail(_HASH_WIDTH).alias("__old_hash"),
    )


def _stored_values(connection: Connection, table: str, rows: pl.DataFrame, tracked: list[str]) -> pl.DataFrame:
    """__key and the stored tracked fields (as text) of the given rows, looked up through a temporary key table."""
    keys = key_columns(table)
    lookup = f"pw_keys_{table}"
    connection.exec_driver_sql(f"CREATE TEMP TABLE {lookup} AS SELECT {_quoted(keys)} FROM {table} WHERE 1 = 0")
    _append(connection, lookup, rows.select(keys), progress=None)
    columns = ", ".join(f'c."{name}"' for name in [*keys, *tracked])
    joined = " AND ".join(f'c."{name}" = k."{name}"' for name in keys)
    stored = _fetch(
        connection,
        f"SELECT {columns} FROM {table} c JOIN {lookup} k ON {joined}",
        _text_schema(table, [*keys, *tracked]),
    )
    connection.exec_driver_sql(f"DROP TABLE {lookup}")
    return stored.select(
        _row_key(table).alias("__key"), *[pl.col(name).cast(pl.String).alias(f"__old_{name}") for name in tracked]
    )


def _unsettle(connection: Connection, table: str, written: pl.DataFrame) -> None:
    """Move the groups these new or changed rows belong to (and, for a changed row, belonged to) from the settled ones
    to the open ones, so that the next evaluation builds them again. Nothing to do before a first evaluation has
    decided any group (the next run evaluates everything)."""
    if written.height == 0 or connection.exec_driver_sql("SELECT 1 FROM settled_basis LIMIT 1").first() is None:
        return
    if table == "projects":
        groups = written.select(pl.lit("project").alias("kind"), pl.col("project_code").alias("group_id"))
    else:
        former = [f"__old_{name}" for name in FORMER_GROUP.get(table, ())]
        case_ids = ["case_id", *(name for name in former if name in written.columns)]  # none without changed rows
        groups = pl.concat(
            [written.select(pl.lit("case").alias("kind"), pl.col(name).alias("group_id")) for name in case_ids]
        )
        if table == "cases":
            groups = pl.concat(
                [groups, written.select(pl.lit("project").alias("kind"), pl.col("project_code").alias("group_id"))]
            )
    groups = groups.drop_nulls().unique()
    lookup = "pw_unsettle"
    connection.exec_driver_sql(f"CREATE TEMP TABLE {lookup} (kind VARCHAR(10), group_id VARCHAR(64))")
    _append(connection, lookup, groups, progress=None)
    # A project clock counts its members' days and pauses: any row of a member case unsettles the project. This runs
    # before the rows are written, so a case moved to another project unsettles the one it leaves.
    connection.exec_driver_sql(
        f"INSERT INTO {lookup} (kind, group_id) SELECT 'project', c.project_code FROM cases c "
        f"WHERE c.project_code IS NOT NULL AND c.case_id IN (SELECT group_id FROM {lookup} WHERE kind = 'case')"
    )
    connection.exec_driver_sql(
        f"DELETE FROM settled_groups WHERE (kind, group_id) IN (SELECT kind, group_id FROM {lookup})"
    )
    connection.exec_driver_sql(
        f"INSERT INTO open_groups (kind, group_id) SELECT DISTINCT kind, group_id FROM {lookup} u "
        "WHERE NOT EXISTS (SELECT 1 FROM open_groups o WHERE o.kind = u.kind AND o.group_id = u.group_id)"
    )
    connection.exec_driver_sql(f"DROP TABLE {lookup}")


@contextmanager
def _bulk_writing(connection: Connection, table: str, *, bulk: bool) -> Iterator[None]:
    """Settings for a large write. SQLite gets a bigger page cache for it. A bulk insert (a first load) drops the
    table's secondary indexes and builds them again afterwards, in the same transaction, which is faster than
    updating them row by row."""
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        cache = connection.exec_driver_sql("PRAGMA cache_size").scalar()
        connection.exec_driver_sql(f"PRAGMA cache_size = -{_SQLITE_BULK_CACHE_KIB}")
    indexes = list(CANONICAL_TABLES[table].indexes) if bulk else []
    for index in indexes:
        index.drop(connection)
    try:
        yield
    finally:
        for index in indexes:
            index.create(connection)
        if sqlite:
            connection.exec_driver_sql(f"PRAGMA cache_size = {cache}")


def _history(
    table: str, new: pl.DataFrame, changed: pl.DataFrame, tracked: list[str], run_id: int | None
) -> pl.DataFrame:
    parts = []
    for name in tracked if changed.height else []:
        old, current = pl.col(f"__old_{name}"), pl.col(name)
        differs = old.ne_missing(current)
        parts.append(
            changed.filter(differs).select(
                pl.col("__key").alias("row_key"),
                pl.lit(name).alias("field"),
                old.alias("old_value"),
                current.alias("new_value"),
            )
        )
    if table in INSERT_EVENTS:
        parts.append(
            new.select(
                pl.col("__key").alias("row_key"),
                pl.lit(INSERT_EVENTS[table]).alias("field"),
                pl.lit(None, pl.String).alias("old_value"),
                pl.col("__key").alias("new_value"),
            )
        )
    schema = {"row_key": pl.String, "field": pl.String, "old_value": pl.String, "new_value": pl.String}
    history = pl.concat([part.cast(schema) for part in parts]) if parts else pl.DataFrame(schema=schema)
    return history.select(pl.lit(run_id, pl.Int64).alias("run_id"), pl.lit(table).alias("table_name"), *schema)


def _with_runs(table: str, rows: pl.DataFrame, run_id: int | None) -> pl.DataFrame:
    runs = (
        ["first_seen_run", "last_seen_run"]
        if "first_seen_run" in CANONICAL_TABLES[table].columns
        else ["last_seen_run"]
    )
    return rows.with_columns(pl.lit(run_id, pl.Int64).alias(name) for name in runs)


def _insert(
    connection: Connection, table: str, rows: pl.DataFrame, run_id: int | None, progress: ProgressCallback | None
) -> None:
    """Rows whose keys are not stored yet (checked in this transaction): a plain bulk insert, COPY on PostgreSQL."""
    _append(connection, table, _with_runs(table, rows, run_id), progress)


def _upsert(
    connection: Connection, table: str, rows: pl.DataFrame, run_id: int | None, progress: ProgressCallback | None
) -> None:
    """Changed rows: every column but the key and first_seen_run is overwritten."""
    if rows.height == 0:
        return
    keys = key_columns(table)
    rows = _with_runs(table, rows, run_id)
    columns = rows.columns
    updates = [name for name in columns if name not in keys and name != "first_seen_run"]
    assignments = ", ".join(f'"{name}" = excluded."{name}"' for name in updates)
    conflict = f"ON CONFLICT ({_quoted(keys)}) DO UPDATE SET {assignments}"
    if connection.dialect.name == "postgresql":
        staging = f"pw_stage_{table}"
        connection.exec_driver_sql(f"CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
        _copy_in(connection, staging, rows, progress, f"{table}: writing")
        connection.exec_driver_sql(
            f"INSERT INTO {table} ({_quoted(columns)}) SELECT {_quoted(columns)} FROM {staging} {conflict}"
        )
        connection.exec_driver_sql(f"DROP TABLE {staging}")
        return
    placeholders = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table} ({_quoted(columns)}) VALUES ({placeholders}) {conflict}"
    _executemany(connection, sql, rows, progress, f"{table}: writing")


def _batches(frame: pl.DataFrame) -> Iterator[tuple[int, pl.DataFrame]]:
    for offset in range(0, frame.height, BATCH_ROWS):
        yield offset, frame.slice(offset, BATCH_ROWS)


def _executemany(
    connection: Connection, sql: str, rows: pl.DataFrame, progress: ProgressCallback | None, what: str
) -> None:
    cursor = connection.connection.driver_connection.cursor()
    try:
        for offset, batch in _batches(rows):
            # Column lists zipped into tuples cost less than polars' row tuples.
            cursor.executemany(sql, zip(*(batch.get_column(name).to_list() for name in batch.columns), strict=True))
            if progress:
                progress(what, offset + batch.height, rows.height)
    finally:
        cursor.close()


def _copy_in(
    connection: Connection, target: str, rows: pl.DataFrame, progress: ProgressCallback | None, what: str | None
) -> None:
    """COPY rows into a PostgreSQL table (CSV: an unquoted empty field is NULL, a quoted one an empty string)."""
    raw_connection = connection.connection.driver_connection
    with raw_connection.cursor() as cursor:
        sql = f"COPY {target} ({_quoted(rows.columns)}) FROM STDIN WITH (FORMAT csv)"
        with cursor.copy(sql) as copy:
            for offset, batch in _batches(rows):
                copy.write(batch.write_csv(include_header=False, quote_style="non_numeric", null_value=""))
                if progress and what:
                    progress(what, offset + batch.height, rows.height)


def _append(connection: Connection, table: str, rows: pl.DataFrame, progress: ProgressCallback | None) -> None:
    """Insert rows as they are. A column that is null throughout is left out: the database fills in NULL, and a
    million rows bind that many fewer parameters."""
    if rows.height == 0:
        return
    rows = rows.select(
        name for name, count in zip(rows.columns, rows.null_count().row(0), strict=True) if count < rows.height
    )
    if connection.dialect.name == "postgresql":
        _copy_in(connection, table, rows, progress, f"{table}: writing")
        return
    placeholders = ", ".join("?" for _ in rows.columns)
    _executemany(
        connection,
        f"INSERT INTO {table} ({_quoted(rows.columns)}) VALUES ({placeholders})",
        rows,
        progress,
        f"{table}: writing",
    )


def read_rows(connection: Connection, sql: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """The rows of a query whose columns are text or integers, in the caller's transaction."""
    return _fetch(connection, sql, schema)


def append_rows(connection: Connection, table: str, rows: pl.DataFrame) -> None:
    """Insert rows as they are, in the caller's transaction (COPY on PostgreSQL)."""
    _append(connection, table, rows, progress=None)


def store_rejects(engine: Engine, rejected: pl.DataFrame, run_id: int | None) -> int:
    """Quarantine rejected rows (a LoadResult's `rejected`: source, table, line, raw, reasons)."""
    if rejected.height == 0:
        return 0
    rows = rejected.select(
        pl.lit(run_id, pl.Int64).alias("run_id"),
        pl.col("source").str.slice(0, 200),
        pl.col("table").alias("target_table"),
        "line",
        "raw",
        "reasons",
    ).cast({"line": pl.Int64})
    with engine.begin() as connection:
        _append(connection, "rejects", rows, progress=None)
    return rows.height
