"""The outbox dispatcher: claim due messages, send them, record what the platform said.

Claims are conditional UPDATEs on the row (``... WHERE id = :id AND <still due>``), which
are atomic on SQLite and PostgreSQL alike, so two dispatchers (the bot and a command-line
process) never send the same row. A claim is a lease: a dispatcher that dies mid-send
leaves the row ``sending`` until the lease runs out, and then any dispatcher takes it
again. Delivery is therefore at least once: a message the platform accepted just before
the process died may be sent twice, but none is lost.

Messages to one conversation (platform and address) go out in the order they were queued:
only the oldest unsent row of a conversation is ever claimed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from rounds.clock import Clock
from rounds.db.engine import Database
from rounds.db.models import MessageRef, OutboxMessage
from rounds.reply import Reply

from . import metrics

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_BACKOFF = 300.0
PERMANENT_ATTEMPTS = 5
UNSENT = ("pending", "sending")


class SendError(Exception):
    """A platform refused or failed a send."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.permanent = permanent


@dataclass(frozen=True)
class Outgoing:
    """A claimed message, with the platform ids it refers to already looked up."""

    id: int
    platform: str
    address: str
    op: str
    ref_key: str | None
    thread_key: str | None
    message: Reply
    attempts: int
    edit_of: str | None
    thread_of: str | None
    lease_until: datetime


class Sender(Protocol):
    """One platform's delivery: return the platform's id of the message."""

    async def send(self, item: Outgoing) -> str: ...


class Dispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        senders: dict[str, Sender] | None = None,
        *,
        batch: int = 50,
        poll_seconds: float = 1.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.senders: dict[str, Sender] = dict(senders or {})
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.instance = uuid.uuid4().hex[:16]
        self._wakes: dict[str, asyncio.Event] = {}

    # --- claiming and recording, in worker threads ---------------------------------

    def _due(self, now: datetime):
        return or_(
            and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
            and_(OutboxMessage.status == "sending", OutboxMessage.claimed_until < now),
        )

    def claim(self, platforms: list[str] | None = None) -> list[Outgoing]:
        """Claim the oldest due message of each conversation, up to ``batch`` of them."""
        platforms = platforms or list(self.senders)
        if not platforms:
            return []
        now = self.clock.now()
        earlier = aliased(OutboxMessage)
        blocked = exists().where(
            earlier.platform == OutboxMessage.platform,
            earlier.address == OutboxMessage.address,
            earlier.status.in_(UNSENT),
            earlier.id < OutboxMessage.id,
        )
        query = (
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status.in_(UNSENT),  # the selective term, first in the index
                OutboxMessage.platform.in_(platforms),
                self._due(now),
                ~blocked,
            )
            .order_by(OutboxMessage.id)
            .limit(self.batch)
            # PostgreSQL: replicas skip each other's candidates instead of waiting on them.
            # The conditional UPDATE below is what makes a claim exclusive, on SQLite too.
            .with_for_update(skip_locked=True)
        )
        claimed: list[Outgoing] = []
        with self.db.session() as session:
            for row_id in session.scalars(query).all():
                result = session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row_id, self._due(now))
                    .values(
                        status="sending",
                        claimed_by=self.instance,
                        claimed_until=now + LEASE,
                        attempts=OutboxMessage.attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount != 1:
                    continue
                row = session.get(OutboxMessage, row_id, populate_existing=True)
                assert row is not None
                claimed.append(
                    Outgoing(
                        id=row.id,
                        platform=row.platform,
                        address=row.address,
                        op=row.op,
                        ref_key=row.ref_key,
                        thread_key=row.thread_key,
                        message=Reply.from_dict(row.payload),
                        attempts=row.attempts,
                        edit_of=self._ref(session, row, row.ref_key) if row.op == "edit" else None,
                        thread_of=self._ref(session, row, row.thread_key),
                        lease_until=now + LEASE,
                    )
                )
        return claimed

    @staticmethod
    def _ref(session, row: OutboxMessage, key: str | None) -> str | None:
        if key is None:
            return None
        return session.scalar(
            select(MessageRef.message_id).where(
                MessageRef.platform == row.platform,
                MessageRef.address == row.address,
                MessageRef.ref_key == key,
            )
        )

    def mark_sent(self, item: Outgoing, message_id: str) -> bool:
        """Record the platform's acceptance; False when our lease was lost meanwhile."""
        now = self.clock.now()
        with self.db.session() as session:
            result = session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == item.id,
                    OutboxMessage.claimed_by == self.instance,
                    OutboxMessage.status == "sending",
                )
                .values(
                    status="sent",
                    sent_at=now,
                    platform_message_id=message_id,
                    claimed_by=None,
                    claimed_until=None,
                    last_error=None,
                )
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return False
            if item.ref_key is not None and item.edit_of is None:
                self._store_ref(session, item, message_id, now)
        metrics.OUTBOX_SENT.labels(item.platform).inc()
        return True

    @staticmethod
    def _store_ref(session, item: Outgoing, message_id: str, now: datetime) -> None:
        existing = session.scalar(
            select(MessageRef).where(
                MessageRef.platform == item.platform,
                MessageRef.address == item.address,
                MessageRef.ref_key == item.ref_key,
            )
        )
        if existing is None:
            session.add(
                MessageRef(
                    platform=item.platform,
                    address=item.address,
                    ref_key=item.ref_key,
                    message_id=message_id,
                    at=now,
                )
            )
        else:
            existing.message_id = message_id
            existing.at = now

    def mark_failed(self, item: Outgoing, error: SendError) -> None:
        """Put the message back for a later attempt, or give up on a permanent refusal."""
        now = self.clock.now()
        dead = error.permanent and item.attempts >= PERMANENT_ATTEMPTS
        delay = error.retry_after
        if delay is None:
            delay = min(MAX_BACKOFF, 2.0 ** min(item.attempts - 1, 16) * random.uniform(0.8, 1.2))
        with self.db.session() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == item.id, OutboxMessage.claimed_by == self.instance)
                .values(
                    status="dead" if dead else "pending",
                    next_attempt_at=now + timedelta(seconds=delay),
                    claimed_by=None,
                    claimed_until=None,
                    last_error=str(error)[:500],
                )
                .execution_options(synchronize_session=False)
            )
        kind = "dead" if dead else ("permanent" if error.permanent else "transient")
        metrics.OUTBOX_FAILED.labels(item.platform, kind).inc()
        log.warning(
            "send failed outbox=%s platform=%s attempts=%s kind=%s retry_in=%.1fs reason=%s",
            item.id,
            item.platform,
            item.attempts,
            kind,
            delay,
            str(error)[:200],
        )

    # --- the loop ----------------------------------------------------------------------

    async def _deliver(self, item: Outgoing) -> None:
        if self.clock.now() >= item.lease_until:
            # Sending the rest of the batch took longer than the lease: another dispatcher
            # may have this message now, so leave it to whoever claims it next.
            log.warning("lease ran out before sending outbox=%s; left for the next claim", item.id)
            return
        sender = self.senders[item.platform]
        try:
            message_id = await sender.send(item)
        except SendError as exc:
            await asyncio.to_thread(self.mark_failed, item, exc)
            return
        except Exception as exc:  # a sender bug or a network error it did not translate
            log.exception("sender raised outbox=%s platform=%s", item.id, item.platform)
            await asyncio.to_thread(self.mark_failed, item, SendError(type(exc).__name__))
            return
        if not await asyncio.to_thread(self.mark_sent, item, message_id):
            log.warning("lease lost before recording outbox=%s; it may be sent again", item.id)

    async def run_once(self, platforms: list[str] | None = None) -> int:
        """Claim and send one round; return how many messages were attempted."""
        items = await asyncio.to_thread(self.claim, platforms)
        # Each claimed message heads a different conversation, so they may go out together
        # without breaking any conversation's order.
        await asyncio.gather(*(self._deliver(item) for item in items))
        return len(items)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Send until nothing is due (or ``max_rounds`` rounds); return how many were tried."""
        total = 0
        for _ in range(max_rounds):
            attempted = await self.run_once()
            if attempted == 0:
                break
            total += attempted
        return total

    def wake(self) -> None:
        """Ask the running loops to look for new messages now (call from the event loop)."""
        for event in self._wakes.values():
            event.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set: one loop per platform, so that a slow or failing
        platform delays only its own messages."""
        platforms = sorted(self.senders)
        log.info("dispatcher started instance=%s platforms=%s", self.instance, ",".join(platforms))
        self._wakes = {p: asyncio.Event() for p in platforms}
        await asyncio.gather(*(self._run_platform(p, stop) for p in platforms))
        log.info("dispatcher stopped instance=%s", self.instance)

    async def _run_platform(self, platform: str, stop: asyncio.Event) -> None:
        wake = self._wakes[platform]
        while not stop.is_set():
            # Clear before the round: a wake() during the round then starts the next one.
            wake.clear()
            try:
                attempted = await self.run_once([platform])
            except Exception:
                # The database may be down: keep the messages, try again shortly.
                log.exception("dispatcher round failed platform=%s; retrying", platform)
                attempted = 0
            if attempted:
                continue
            waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
            _, pending = await asyncio.wait(
                waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()


def prune(db: Database, before: datetime, batch: int = 1000) -> int:
    """Delete sent and dead messages created before ``before``; return how many.

    Nothing reads old sent rows (edits and threads find their message in ``message_refs``),
    and keeping them would make every claim pay for the whole history. Deleted a thousand
    at a time, each batch its own short transaction, so that the first prune after an
    upgrade (a million rows) never holds SQLite's write lock for seconds.
    """
    removed = 0
    done = OutboxMessage.status.in_(("sent", "dead"))
    while True:
        with db.session() as session:
            ids = session.scalars(
                select(OutboxMessage.id)
                .where(done, OutboxMessage.created_at < before)
                .order_by(OutboxMessage.id)
                .limit(batch)
            ).all()
            if ids:
                session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        removed += len(ids)
        if len(ids) < batch:
            return removed


def pending_count(db: Database) -> tuple[int, datetime | None]:
    """How many messages wait to be sent, and since when the oldest waits."""
    with db.session(write=False) as session:
        count, oldest = session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.status.in_(UNSENT)
            )
        ).one()
    return int(count), oldest
