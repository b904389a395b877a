"""Claims on delivery rows (认领发送): which delivery attempt is sending a digest, and a dead attempt's rows given back.

A delivery attempt is one run of the delivery in one process: the host, the pid and the process's start time (so a
pid the kernel has handed to another program is not mistaken for it) and, inside Prefect, the flow run. The attempt
holds a lease row in `delivery_leases` that a background thread renews while it sends.

A digest's rows are claimed (`pending` → `sending`, `claimed_by` = the attempt) just before the digest is sent, and
its result is recorded right after, so one attempt never holds more digests than it sends in parallel. Before the
next delivery reads what is pending, rows `sending` whose attempt is dead are given back (`sending` → `pending`):
dead means its process is gone from this host (or its pid now belongs to another process), its lease was not renewed
in time (a host we cannot look into), its flow run has ended, or it left no lease at all. Those digests are the only
ones that can reach a recipient twice: they may have gone out just before the crash.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, or_, select, update

from schemas.database import in_batches
from schemas.tables import Delivery, DeliveryLease
from tasks.alerts.cards import PENDING

logger = logging.getLogger("permitwatch.alerts")

SENDING = "sending"
_PROC = Path("/proc")


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: who holds the rows it claims."""

    attempt_id: str
    host: str
    pid: int
    process_started: str
    flow_run_id: str | None

    @classmethod
    def of_this_process(cls, flow_run_id: str | None = None) -> Attempt:
        pid = os.getpid()
        return cls(uuid.uuid4().hex, socket.gethostname(), pid, process_start(pid) or "", flow_run_id)

    def describe(self) -> str:
        run = f", flow run {self.flow_run_id}" if self.flow_run_id else ""
        return f"{self.host} pid {self.pid}{run}"


def process_start(pid: int) -> str | None:
    """The process's start time as the kernel records it (clock ticks since boot); '' where there is no /proc to
    read it from; None when no such process exists."""
    if not _PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""
        return ""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields that follow start after the last ')'.
    # Field 3 is the state (a zombie has exited, only its parent has not collected it); field 22 the start time.
    fields = text.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def holder_alive(
    lease: DeliveryLease | None, now: datetime, run_ended: Callable[[str], bool] | None = None
) -> bool:
    """Whether the attempt that holds `lease` may still be sending."""
    if lease is None:
        return False
    if _utc(lease.expires_at) < now:
        return False
    if lease.host == socket.gethostname():
        started = process_start(lease.pid)
        return started is not None and lease.process_started in ("", started)
    return not (lease.flow_run_id and run_ended is not None and run_ended(lease.flow_run_id))


@contextmanager
def delivery_lease(engine: Engine, lease_seconds: float, flow_run_id: str | None = None) -> Iterator[Attempt]:
    """Hold a lease for a new attempt of this process, renewed in the background until the block ends. On the way
    out the attempt gives back any row it still holds and drops its lease."""
    attempt = Attempt.of_this_process(flow_run_id)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(DeliveryLease).values(
                attempt_id=attempt.attempt_id,
                host=attempt.host,
                pid=attempt.pid,
                process_started=attempt.process_started,
                flow_run_id=attempt.flow_run_id,
                started_at=now,
                expires_at=now + timedelta(seconds=lease_seconds),
            )
        )
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(engine, attempt, lease_seconds, stop), name="permitwatch-lease", daemon=True
    )
    renewer.start()
    try:
        yield attempt
    finally:
        stop.set()
        renewer.join()
        release_attempts(engine, [attempt.attempt_id], "the delivery stopped before recording a result: result unknown")
        with engine.begin() as connection:
            connection.execute(delete(DeliveryLease).where(DeliveryLease.attempt_id == attempt.attempt_id))


def _renew(engine: Engine, attempt: Attempt, lease_seconds: float, stop: threading.Event) -> None:
    # Renewed three times per lease, so one slow write does not let the lease lapse.
    while not stop.wait(lease_seconds / 3):
        try:
            with engine.begin() as connection:
                connection.execute(
                    update(DeliveryLease)
                    .where(DeliveryLease.attempt_id == attempt.attempt_id)
                    .values(expires_at=datetime.now(UTC) + timedelta(seconds=lease_seconds))
                )
        except Exception as exc:  # a busy database must not end the delivery; the next tick tries again
            logger.warning("could not renew the delivery lease of %s: %s", attempt.describe(), exc)


class _NotAllPending(Exception):
    """Raised inside the claim transaction to roll it back."""


def claim(engine: Engine, attempt: Attempt, delivery_ids: Sequence[int], stamp: datetime) -> bool:
    """Claim all of a digest's rows for the attempt, in one transaction, or none of them: False when another attempt
    holds some of them or they are no longer pending (sent, superseded, held for review, …)."""
    ids = list(delivery_ids)
    try:
        with engine.begin() as connection:
            claimed = 0
            for chunk in in_batches(ids):
                claimed += connection.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(chunk), Delivery.status == PENDING)
                    .values(status=SENDING, claimed_by=attempt.attempt_id, sent_at=stamp)
                ).rowcount
            if claimed != len(ids):
                raise _NotAllPending
    except _NotAllPending:
        return False
    return True


def held_by(attempt: Attempt) -> Any:
    """SQL: the rows this attempt holds, plus those given back from it that nobody has claimed since (its lease
    lapsed while it was still sending): a result for them must still be recorded."""
    return or_(
        (Delivery.status == SENDING) & (Delivery.claimed_by == attempt.attempt_id),
        (Delivery.status == PENDING) & Delivery.claimed_by.is_(None),
    )


def release_dead(engine: Engine, run_ended: Callable[[str], bool] | None = None) -> int:
    """Give back the rows of every attempt that is dead, and drop dead attempts' leases. Returns the rows given back."""
    now = datetime.now(UTC)
    with engine.connect() as connection:
        leases = {
            row.attempt_id: DeliveryLease(**row._mapping)
            for row in connection.execute(select(DeliveryLease.__table__))
        }
        holders = set(
            connection.execute(select(Delivery.claimed_by).where(Delivery.status == SENDING).distinct()).scalars()
        )
    dead_leases = [key for key, lease in leases.items() if not holder_alive(lease, now, run_ended)]
    dead = [holder for holder in holders if holder is None or not holder_alive(leases.get(holder), now, run_ended)]
    released = release_attempts(engine, dead, "interrupted while sending (its delivery died): result unknown")
    if dead_leases:
        with engine.begin() as connection:
            connection.execute(delete(DeliveryLease).where(DeliveryLease.attempt_id.in_(dead_leases)))
    if released:
        logger.warning("%d deliveries were left mid-send by a delivery that died; they will be sent again", released)
    return released


def release_run(engine: Engine, flow_run_id: str) -> int:
    """Give back the rows of every attempt of one flow run (its run crashed, so it sends nothing more)."""
    with engine.connect() as connection:
        attempts = list(
            connection.execute(
                select(DeliveryLease.attempt_id).where(DeliveryLease.flow_run_id == flow_run_id)
            ).scalars()
        )
    released = release_attempts(engine, attempts, "interrupted while sending (its flow run crashed): result unknown")
    with engine.begin() as connection:
        connection.execute(delete(DeliveryLease).where(DeliveryLease.flow_run_id == flow_run_id))
    return released


def release_attempts(engine: Engine, attempt_ids: Sequence[str | None], why: str) -> int:
    """`sending` → `pending` for the rows these attempts hold (None: rows claimed without an attempt)."""
    named = [attempt_id for attempt_id in attempt_ids if attempt_id is not None]
    holders = [Delivery.claimed_by.in_(chunk) for chunk in in_batches(named)]
    if None in attempt_ids:
        holders.append(Delivery.claimed_by.is_(None))
    if not holders:
        return 0
    with engine.begin() as connection:
        return int(
            connection.execute(
                update(Delivery)
                .where(Delivery.status == SENDING, or_(*holders))
                .values(status=PENDING, claimed_by=None, last_error=why)
            ).rowcount
        )


def flow_run_ended(flow_run_id: str) -> bool:
    """Whether Prefect records the flow run as finished (completed, failed, crashed or cancelled). Unknown (no API,
    an error) counts as not ended: the lease's expiry still frees its rows."""
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(uuid.UUID(flow_run_id)).state
    except Exception:
        return False
    return state is not None and state.is_final()


def _utc(moment: datetime) -> datetime:
    """SQLite hands back stored UTC times without an offset; PostgreSQL with one."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

