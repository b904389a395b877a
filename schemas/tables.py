"""Database tables (SQLAlchemy 2): one per canonical table, plus the run ledger, evaluations and the alert outbox.

A canonical table's columns are generated from its declaration (config/canonical.py): text and code columns are
VARCHAR of their max_length (TEXT without one), the key columns the primary key, required columns NOT NULL. Only the
storage-only columns (row_hash, first_seen_run, last_seen_run) are declared here. The migrations in
schemas/migrations/versions must create the same schema (tests/test_database.py compares them).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from config.canonical import CANONICAL_COLUMNS, CanonicalColumn

_SQL_TYPES: dict[str, TypeEngine[Any]] = {"date": Date(), "datetime": DateTime(), "integer": Integer()}


class Base(DeclarativeBase):
    pass


class Run(Base):
    """One nightly, backfill or delivery run: what it read and decided."""

    __tablename__ = "runs"
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(40))
    as_of: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="running")
    summary: Mapped[dict | None] = mapped_column(JSON)


class RunLock(Base):
    """Held by the one nightly run allowed at a time; a second run finds the row taken and stands down."""

    __tablename__ = "run_locks"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(Integer)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _canonical_column(column: CanonicalColumn) -> Column[Any]:
    if column.kind in ("text", "code"):
        sql_type: TypeEngine[Any] = String(column.max_length) if column.max_length else Text()
    else:
        sql_type = _SQL_TYPES[column.kind]
    return Column(column.name, sql_type, primary_key=column.key, nullable=not column.required, index=column.index)


def canonical_table(table: str, metadata: MetaData, *storage: Column[Any]) -> Table:
    """The table of a canonical model (config/canonical.py), followed by the storage-only columns."""
    return Table(table, metadata, *(_canonical_column(column) for column in CANONICAL_COLUMNS[table]), *storage)


def _row_hash() -> Column[str]:
    """The hash of a row's canonical values: an unchanged row is not written again (tasks/store/upsert.py)."""
    return Column("row_hash", String(32), nullable=False)


def _last_seen_run() -> Column[int]:
    return Column("last_seen_run", Integer)


class Case(Base):
    """办件."""

    __table__ = canonical_table(
        "cases", Base.metadata, _row_hash(), Column("first_seen_run", Integer), _last_seen_run()
    )


class Step(Base):
    """环节: one stage of a case, possibly at another unit (市县同权)."""

    __table__ = canonical_table("steps", Base.metadata, _row_hash(), _last_seen_run())


class Suspension(Base):
    """特别程序: a pause (or restart) of a case's clock."""

    __table__ = canonical_table("suspensions", Base.metadata, _row_hash(), _last_seen_run())


class Project(Base):
    """工程建设项目."""

    __table__ = canonical_table("projects", Base.metadata, _row_hash(), _last_seen_run())


class Deferral(Base):
    """容缺后补: materials the applicant must supply by a deadline."""

    __table__ = canonical_table("deferrals", Base.metadata, _row_hash(), _last_seen_run())


class Push(Base):
    """审管互动: an approval result pushed to a supervising department, to be claimed (认领)."""

    __table__ = canonical_table("pushes", Base.metadata, _row_hash(), _last_seen_run())


# The stored form of each canonical table, by table name.
CANONICAL_TABLES: dict[str, Table] = {
    model.__table__.name: model.__table__ for model in (Case, Step, Suspension, Project, Deferral, Push)
}


class ChangeHistory(Base):
    """Every change of status or date seen on a stored row, with the run that saw it."""

    __tablename__ = "change_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"))
    table_name: Mapped[str] = mapped_column(String(40))
    row_key: Mapped[str] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(60))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_change_history_row", "table_name", "row_key"),)


class Reject(Base):
    """Quarantine: a row that failed its contract, with source, line, raw values and every reason."""

    __tablename__ = "rejects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"))
    source: Mapped[str] = mapped_column(String(200))
    target_table: Mapped[str] = mapped_column(String(40))
    line: Mapped[int | None] = mapped_column(Integer)
    raw: Mapped[dict] = mapped_column(JSON)
    reasons: Mapped[str] = mapped_column(Text)


class Evaluation(Base):
    """A clock's state as of a date. History is kept: one row per (clock, as_of)."""

    __tablename__ = "evaluations"
    clock_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    clock_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(64), index=True)
    unit_code: Mapped[str] = mapped_column(String(64), index=True)
    matter_code: Mapped[str | None] = mapped_column(String(64))
    start_date: Mapped[date] = mapped_column(Date)
    limit_days: Mapped[int] = mapped_column(Integer)
    limit_kind: Mapped[str] = mapped_column(String(10))
    due_date: Mapped[date | None] = mapped_column(Date)
    elapsed: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int | None] = mapped_column(Integer)
    overdue_workdays: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(20))
    calendar: Mapped[str] = mapped_column(String(12))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"))
    __table_args__ = (Index("ix_evaluations_as_of_level", "as_of", "level"),)


class Card(Base):
    """An alert (黄牌/红牌/督办): unique per (clock, level, due date, reminder), stored before any send."""

    __tablename__ = "cards"
    card_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clock_id: Mapped[str] = mapped_column(String(160))
    level: Mapped[str] = mapped_column(String(20))
    due_date: Mapped[date | None] = mapped_column(Date)
    reminder_no: Mapped[int] = mapped_column(Integer, default=0)
    clock_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str | None] = mapped_column(String(64))
    unit_code: Mapped[str] = mapped_column(String(64), index=True)
    matter_code: Mapped[str | None] = mapped_column(String(64))
    overdue_workdays: Mapped[int] = mapped_column(Integer, default=0)
    remaining: Mapped[int | None] = mapped_column(Integer)
    calendar: Mapped[str] = mapped_column(String(12))
    as_of: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    suppressed_by: Mapped[str | None] = mapped_column(String(200))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"))
    __table_args__ = (
        UniqueConstraint("clock_id", "level", "due_date", "reminder_no", name="uq_cards_identity"),
        Index("ix_cards_status", "status"),
    )


class Delivery(Base):
    """One card to one recipient target: apprise's result, attempts and last error."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.card_id"), index=True)
    recipient_unit: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The delivery attempt (`delivery_leases.attempt_id`) holding the row while it is `sending`.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        UniqueConstraint("card_id", "recipient_unit", "channel", "target", name="uq_deliveries_target"),
        Index("ix_deliveries_status", "status"),
    )


class DeliveryLease(Base):
    """A delivery attempt that may hold `sending` rows: which process (host, pid, process start) and Prefect flow run
    it is, and until when its lease runs (renewed while it sends). Gone or expired, its rows are given back."""

    __tablename__ = "delivery_leases"
    attempt_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    process_started: Mapped[str] = mapped_column(String(40))
    flow_run_id: Mapped[str | None] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OpsNotice(Base):
    """A notice ops get once (e.g. "the nightly run for 2026-11-27 did not complete"), keyed by what it is about."""

    __tablename__ = "ops_notices"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Silence(Base):
    """A silence: suppresses cards for a case, unit or matter until a date, with a reason."""

    __tablename__ = "silences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(10))
    value: Mapped[str] = mapped_column(String(64))
    until: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    removed: Mapped[bool] = mapped_column(Boolean, default=False)


class SettledGroup(Base):
    """A group of clocks whose evaluation is final (落定): every clock completed, every date of its rows more than a
    month before the run's as-of date, nothing rejected. `kind` case: every row with this case_id (the case, its
    steps, suspensions, deferral and pushes); `kind` project: the project clock. A change to any row of the group
    removes it here, in the same transaction as the change. `counts`: its final evaluations counted by clock type,
    level and calendar, for run summaries ("case completed_late official 1;step completed_on_time official 2")."""

    __tablename__ = "settled_groups"
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    counts: Mapped[str] = mapped_column(Text)
    digest: Mapped[int | None] = mapped_column(BigInteger)  # of the group's final evaluations (tasks/store/settled.py)
    run_id: Mapped[int | None] = mapped_column(Integer)


class OpenGroup(Base):
    """A group (see SettledGroup) that has not settled: the next incremental run reads back and evaluates it. A new
    or changed row puts its groups here, in the same transaction as the change; they leave when they settle."""

    __tablename__ = "open_groups"
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class SettledBasis(Base):
    """What the settled groups were decided on: a fingerprint of the rules, calendar, unit codes and clock engine, and
    the as-of date. A run with another fingerprint, or an earlier as-of date, evaluates everything again."""

    __tablename__ = "settled_basis"
    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[date] = mapped_column(Date)
    run_id: Mapped[int | None] = mapped_column(Integer)


class ReviewDecision(Base):
    """督办 review: ops approved or held an escalation (clock, level, due date) bound for supervisors. A hold keeps the
    supervisors' copies of that escalation suppressed, reminders included, until its level or due date changes or
    `until` has passed; the owner unit is alerted as usual."""

    __tablename__ = "review_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    clock_id: Mapped[str] = mapped_column(String(160))
    level: Mapped[str] = mapped_column(String(20))
    due_date: Mapped[date | None] = mapped_column(Date)
    subject_id: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(10))  # approved | held
    reason: Mapped[str | None] = mapped_column(Text)
    until: Mapped[date | None] = mapped_column(Date)  # a hold's last day; none: until the level or due date changes
    decided_by: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_review_decisions_clock", "clock_id", "level", "due_date"),)
