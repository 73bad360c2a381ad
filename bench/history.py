"""A year of use, inserted fast with SQLAlchemy Core: the history a benchmark runs against.

Incidents are filed over the last 365 days. Most are closed (by the reporter or, after
72 hours, by the bot), those of the last three days are resolved and wait for the
reporter, and a few hundred are still open or acknowledged. Each incident has what
handling it through the bot would have left: its audit entries, the page to the duty
engineer, the sent outbox rows (ops card, edits, thread replies, direct messages) with
texts from the real catalogue, and the message reference of its card.

The rows are written with plain ``INSERT`` executemany in batches, not through the bot,
so that 100,000 incidents take a minute instead of hours.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, func, select, text

from rounds.db.models import AuditEntry, Incident, IncidentPage, MessageRef, OutboxMessage
from rounds.i18n import messages
from rounds.itsm.context import Env
from rounds.reply import Button, Reply

# Reports as people type them, each with what the engineer wrote when resolving it.
REPORTS = (
    ("门诊3楼护士站打印机卡纸，打不了腕带", "清理卡纸，更换搓纸轮"),
    ("HIS 收费系统无法登录，收费窗口排长队", "应用服务器连接池耗尽，重启后恢复"),
    ("检验科 LIS 报告打不开", "报告服务证书过期，已更新"),
    ("内科病区一台电脑蓝屏", "更换内存条"),
    ("PACS 影像调阅很慢", "存储链路切换到备用交换机"),
    ("住院部5楼无线网络断了", "AP 断电，已恢复供电"),
    ("医保结算失败，提示接口超时", "医保前置机网络恢复"),
    ("急诊抢救室电脑死机，无法开医嘱", "重启并检查硬盘"),
    ("申请新员工 HIS 账号，不急", "账号已开通"),
    ("电子病历偶尔保存失败", "数据库锁等待，调整后观察"),
    ("药房扫码枪扫不出处方条码", "重新配置扫码枪"),
    ("发药窗口叫号屏黑屏", "更换显示器电源"),
)
REPORTERS = ("nurse.li", "mgr.chen", "eng.wang", "eng.zhao")
REPORTER_WEIGHTS = (80, 8, 6, 6)
ASSIGNEES = ("eng.wang", "eng.zhao", "vendor.sun")
ASSIGNEE_WEIGHTS = (45, 45, 10)
LEAD = "eng.wang"  # who hands incidents to the vendor

# The stored values and keys the bot's own rows use. The messages are rendered here from
# the catalogue rather than by the domain's builders, so that the history does not break
# when those move; it needs realistic rows, not the exact sentences of today.
OPEN, ACKNOWLEDGED, RESOLVED, CLOSED = "open", "acknowledged", "resolved", "closed"
SYSTEM_ACTOR = "rounds"
MARKS = {"P1": "🔴", "P2": "🟠", "P3": "🟡", "P4": "🔵"}

YEAR = timedelta(days=365)
AUTO_CLOSE = timedelta(hours=72)
ACTIVE = 300  # incidents still open or acknowledged, at most a tenth of the history
BATCH = 5_000  # rows per executemany
CHUNK = 2_000  # incidents generated before their rows are written
TABLES: tuple[Table, ...] = (
    Incident.__table__,
    AuditEntry.__table__,
    OutboxMessage.__table__,
    IncidentPage.__table__,
    MessageRef.__table__,
)


def card_key(incident: Incident) -> str:
    return f"incident:{incident.id}"


@dataclass
class _Rows:
    """Rows waiting to be written, by table, in an order that satisfies foreign keys."""

    by_table: dict[Table, list[dict[str, Any]]] = field(
        default_factory=lambda: {table: [] for table in TABLES}
    )

    def add(self, table: Table, **row: Any) -> None:
        self.by_table[table].append(row)

    def flush(self, engine: Engine) -> None:
        with engine.begin() as conn:
            for table, rows in self.by_table.items():
                for start in range(0, len(rows), BATCH):
                    conn.execute(table.insert(), rows[start : start + BATCH])
                rows.clear()


class History:
    """Writes ``count`` incidents of history, ending at ``now``, into a migrated database."""

    def __init__(self, env: Env, now: datetime, seed: int = 20261203) -> None:
        self.env = env
        self.now = now
        self.rng = random.Random(seed)
        self.reports = [(t, fix, env.priorities.assess(t)) for t, fix in REPORTS]
        self.ids = {table: 0 for table in TABLES}
        self.rows = _Rows()

    def write(self, engine: Engine, count: int) -> dict[str, int]:
        """Insert the history; return the row count of each table."""
        rng = self.rng
        # Up to six hours ago, so that every incident not left active has been resolved.
        span = YEAR - timedelta(hours=6)
        created = sorted(self.now - YEAR + span * rng.random() for _ in range(count))
        recent = [i for i, at in enumerate(created) if at > self.now - timedelta(days=30)]
        pool = recent if len(recent) >= 2 * ACTIVE else range(count // 2, count)
        active = set(rng.sample(pool, min(ACTIVE, count // 10, len(pool))))
        for index, at in enumerate(created):
            state = "active" if index in active else "done"
            self._incident(at, state)
            if (index + 1) % CHUNK == 0:
                self.rows.flush(engine)
        self.rows.flush(engine)
        self._finish(engine)
        with engine.connect() as conn:
            return {t.name: conn.scalar(select(func.count()).select_from(t)) for t in TABLES}

    # --- one incident and everything it left -------------------------------------------

    def _t(self, key: str, /, **params: Any) -> str:
        """A catalogue sentence; a placeholder this history does not fill shows as "—".

        Lenient on purpose: the history only needs messages of a realistic size, and must
        not break when a sentence gains a placeholder.
        """
        template = messages(self.env.config.rounds.language).get(key, key)
        return template.format_map(defaultdict(lambda: "—", params))

    def _next(self, table: Table) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def _minutes(self, low: float, high: float) -> timedelta:
        return timedelta(minutes=self.rng.uniform(low, high))

    def _incident(self, created: datetime, state: str) -> None:
        rng = self.rng
        report_text, fix, assessment = rng.choice(self.reports)
        reporter = rng.choices(REPORTERS, REPORTER_WEIGHTS)[0]
        incident = Incident(
            id=self._next(Incident.__table__),
            title=report_text,
            description=report_text,
            status=OPEN,
            priority=assessment.priority,
            impact=assessment.impact,
            urgency=assessment.urgency,
            major=assessment.major,
            system=assessment.system,
            location=assessment.location,
            reporter=reporter,
            assignee=None,
            acknowledged_by=None,
            resolution=None,
            source="console",
            created_at=created,
            acknowledged_at=None,
            resolved_at=None,
            closed_at=None,
            escalation_step=0,
            escalate_at=None,
        )
        self._reported(incident)
        if state == "active" and rng.random() < 0.6:
            # Left open: escalation has run its two steps and stopped.
            incident.escalation_step = 2
            self._store(incident)
            return
        acked_at = created + self._minutes(1, 30)
        assignee = rng.choices(ASSIGNEES, ASSIGNEE_WEIGHTS)[0]
        if assignee == "vendor.sun":
            self._assigned(incident, acked_at - self._minutes(0, 1), assignee)
        self._acknowledged(incident, acked_at, assignee)
        if state == "active":
            self._store(incident)
            return
        if rng.random() < 0.1:
            self._note(incident, acked_at + self._minutes(1, 10), assignee)
        resolved_at = acked_at + self._minutes(10, 300)
        self._resolved(incident, resolved_at, assignee, fix)
        if rng.random() < 0.6:
            closed_at, actor = resolved_at + self._minutes(10, 24 * 60), incident.reporter
        else:
            closed_at, actor = resolved_at + AUTO_CLOSE, SYSTEM_ACTOR
        if closed_at <= self.now:
            self._closed(incident, closed_at, actor)
        self._store(incident)

    def _store(self, incident: Incident) -> None:
        row = {c.name: getattr(incident, c.name) for c in Incident.__table__.columns}
        self.rows.add(Incident.__table__, **row)

    def _reported(self, incident: Incident) -> None:
        env, at = self.env, incident.created_at
        detail = f"{incident.priority} {incident.impact}/{incident.urgency}"
        self._audit(at, incident.reporter, "report", incident, detail)
        card_id = self._post(at, "#ops", self._card(incident), ref=incident)
        self.rows.add(
            MessageRef.__table__,
            id=self._next(MessageRef.__table__),
            platform="console",
            address="#ops",
            ref_key=card_key(incident),
            message_id=f"c{card_id}",
            at=at,
        )
        duty = env.rota.on_duty(at)
        if duty is not None and duty != incident.reporter:
            self._page(incident, at, duty, "incident.page.new")
        if incident.priority == "P1":
            notice = self._t(
                "incident.managers_p1",
                ref=incident.ref,
                title=incident.title,
                reporter=env.people.label(incident.reporter),
            )
            self._post(at, "#managers", Reply(notice))

    def _assigned(self, incident: Incident, at: datetime, assignee: str) -> None:
        label = self.env.people.label
        incident.assignee = assignee
        self._audit(at, LEAD, "assign", incident, f"- -> {assignee}")
        line = self._t("incident.thread.assigned", who=label(LEAD), to=label(assignee))
        self._changed(incident, at, line)
        self._page(incident, at, assignee, "incident.page.assigned", who=label(LEAD))

    def _acknowledged(self, incident: Incident, at: datetime, actor: str) -> None:
        label = self.env.people.label
        incident.status = ACKNOWLEDGED
        incident.acknowledged_by = incident.assignee = actor
        incident.acknowledged_at = at
        incident.escalate_at = None
        self._audit(at, actor, "ack", incident)
        self._changed(incident, at, self._t("incident.thread.acked", who=label(actor)))
        if incident.reporter != actor:
            text = self._t(
                "incident.reporter.acked", ref=incident.ref, title=incident.title, who=label(actor)
            )
            self._post(at, f"@{incident.reporter}", Reply(text))

    def _note(self, incident: Incident, at: datetime, actor: str) -> None:
        note = "已远程登录排查，稍后到现场"
        self._audit(at, actor, "note", incident, note)
        line = self._t(
            "incident.thread.note", ref=incident.ref, who=self.env.people.label(actor), text=note
        )
        self._post(at, "#ops", Reply(line), thread=incident)

    def _resolved(self, incident: Incident, at: datetime, actor: str, fix: str) -> None:
        label = self.env.people.label
        incident.status = RESOLVED
        incident.resolved_at = at
        incident.resolution = fix
        self._audit(at, actor, "resolve", incident, fix)
        self._changed(
            incident, at, self._t("incident.thread.resolved", who=label(actor), text=fix)
        )
        if incident.reporter != actor:
            text = self._t(
                "incident.reporter.resolved",
                ref=incident.ref,
                title=incident.title,
                who=label(actor),
                text=fix,
            )
            buttons = [
                Button(self._t("button.close"), f"close {incident.ref}", "primary"),
                Button(self._t("button.reopen"), f"reopen {incident.ref}"),
            ]
            self._post(at, f"@{incident.reporter}", Reply(text, buttons=buttons))

    def _closed(self, incident: Incident, at: datetime, actor: str) -> None:
        incident.status = CLOSED
        incident.closed_at = at
        if actor == SYSTEM_ACTOR:
            self._audit(at, actor, "close", incident, "auto after 72 h", via="scheduler")
            self._changed(incident, at, self._t("incident.thread.auto_closed"))
            text = self._t("incident.reporter.auto_closed", ref=incident.ref, title=incident.title)
            self._post(at, f"@{incident.reporter}", Reply(text))
        else:
            self._audit(at, actor, "close", incident)
            line = self._t("incident.thread.closed", who=self.env.people.label(actor))
            self._changed(incident, at, line)

    def _page(self, incident: Incident, at: datetime, name: str, key: str, **extra: str) -> None:
        params = {
            "mark": MARKS[incident.priority],
            "ref": incident.ref,
            "priority": incident.priority,
            "title": incident.title,
        }
        if key == "incident.page.new":
            params["reporter"] = self.env.people.label(incident.reporter)
        buttons = [Button(self._t("button.ack"), f"ack {incident.ref}", "primary")]
        self._post(at, f"@{name}", Reply(self._t(key, **params, **extra), buttons=buttons))
        self.rows.add(
            IncidentPage.__table__,
            id=self._next(IncidentPage.__table__),
            incident_id=incident.id,
            person=name,
            at=at,
        )

    # --- rows --------------------------------------------------------------------------

    def _card(self, incident: Incident) -> Reply:
        """The incident's card in the ops channel, in its current state."""
        t, label = self._t, self.env.people.label
        title = t(
            "incident.card",
            mark=MARKS[incident.priority],
            priority=incident.priority,
            ref=incident.ref,
            title=incident.title,
            major=t("incident.major_tag") if incident.major else "",
        )
        fields = [
            (t("field.status"), t(f"status.{incident.status}")),
            (t("field.reporter"), label(incident.reporter)),
            (t("field.assignee"), label(incident.assignee)),
            (t("field.system"), incident.system or "—"),
            (t("field.reported_at"), self.env.local(incident.created_at)),
        ]
        if incident.resolution:
            fields.append((t("field.resolution"), incident.resolution))
        ref = incident.ref
        buttons = {
            OPEN: [Button(t("button.ack"), f"ack {ref}", "primary")],
            ACKNOWLEDGED: [Button(t("button.resolve"), f"resolve {ref}", "primary")],
            RESOLVED: [Button(t("button.close"), f"close {ref}")],
        }.get(incident.status, [])
        footer = t("incident.footer", impact=incident.impact, urgency=incident.urgency)
        return Reply(title, fields=fields, buttons=buttons, footer=footer)

    def _changed(self, incident: Incident, at: datetime, line: str) -> None:
        """The card edited in place and a line in its thread, as the bot does on a change."""
        self._post(at, "#ops", self._card(incident), ref=incident, op="edit")
        self._post(at, "#ops", Reply(f"{incident.ref} · {line}"), thread=incident)

    def _audit(
        self,
        at: datetime,
        actor: str,
        action: str,
        incident: Incident,
        detail: str | None = None,
        via: str = "console",
    ) -> None:
        self.rows.add(
            AuditEntry.__table__,
            id=self._next(AuditEntry.__table__),
            at=at,
            actor=actor,
            action=action,
            record=incident.ref,
            transport=via,
            result="ok",
            detail=detail,
        )

    def _post(
        self,
        at: datetime,
        address: str,
        message: Reply,
        *,
        ref: Incident | None = None,
        thread: Incident | None = None,
        op: str = "post",
    ) -> int:
        """A sent outbox row, delivered a fraction of a second after it was queued."""
        row_id = self._next(OutboxMessage.__table__)
        sent = at + timedelta(seconds=self.rng.uniform(0.05, 0.5))
        self.rows.add(
            OutboxMessage.__table__,
            id=row_id,
            platform="console",
            address=address,
            op=op,
            ref_key=card_key(ref) if ref is not None else None,
            thread_key=card_key(thread) if thread is not None else None,
            payload=message.to_dict(),
            status="sent",
            attempts=1,
            created_at=at,
            next_attempt_at=at,
            claimed_by=None,
            claimed_until=None,
            sent_at=sent,
            platform_message_id=f"c{row_id}",
            last_error=None,
        )
        return row_id

    def _finish(self, engine: Engine) -> None:
        """On PostgreSQL, move the id sequences past the rows and refresh statistics.

        Statistics are what a year of autovacuum would have left. SQLite gets no ANALYZE,
        because Rounds never runs one: its planner works without statistics in production.
        """
        if engine.dialect.name != "postgresql":
            return
        with engine.begin() as conn:
            for table in TABLES:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT max(id) FROM {table.name}))"
                    )
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
