"""APScheduler 3 inside the bot's event loop, with jobs kept in the database.

Every job has a stable id and is added with ``replace_existing``, so a restart updates the
stored job instead of adding a second one. Runs missed while the bot was down are
coalesced into one (``coalesce``, no misfire grace limit), and a job never runs twice at
once (``max_instances = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from rounds.config import Config
from rounds.db.engine import Database, make_engine

JOB_TABLE = "apscheduler_jobs"
JOB_STORE_BUSY_MS = 250
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: str
    trigger: IntervalTrigger


def job_specs(config: Config) -> list[JobSpec]:
    return [
        JobSpec(
            "escalate-incidents",
            "rounds.handlers.jobs:escalate_incidents",
            IntervalTrigger(seconds=config.escalation.check_seconds),
        ),
        JobSpec(
            "close-resolved-incidents",
            "rounds.handlers.jobs:close_resolved_incidents",
            IntervalTrigger(minutes=5),
        ),
        JobSpec(
            "prune-delivered-rows",
            "rounds.handlers.jobs:prune_delivered_rows",
            IntervalTrigger(hours=1),
        ),
        JobSpec(
            "expire-abandoned-forms",
            "rounds.handlers.jobs:expire_abandoned_forms",
            IntervalTrigger(minutes=1),
        ),
    ]


def job_store_engine(db: Database) -> Engine:
    """The store's own engine: on SQLite it waits at most a quarter second for the lock.

    APScheduler 3 calls its store on the event loop. With Rounds' usual ten-second busy
    timeout, another process holding the write lock would freeze the loop (and Slack's
    three seconds) for as long; a short wait fails instead, and APScheduler tries again.
    """
    if db.dialect != "sqlite":
        return db.engine
    return make_engine(db.url, busy_ms=JOB_STORE_BUSY_MS)


def build_scheduler(db: Database, config: Config) -> AsyncIOScheduler:
    """A scheduler whose jobs live in Rounds' own database; start it inside the loop."""
    # APScheduler 3 reads and updates its store on the event loop itself. Its reads run as
    # plain (deferred) transactions, so on SQLite they never wait for the write lock; its
    # one small write per run takes the lock only for that write.
    store = SQLAlchemyJobStore(
        engine=job_store_engine(db).execution_options(rounds_write=False), tablename=JOB_TABLE
    )
    scheduler = AsyncIOScheduler(
        jobstores={"default": store}, job_defaults=JOB_DEFAULTS, timezone=config.zone
    )
    for spec in job_specs(config):
        scheduler.add_job(spec.func, spec.trigger, id=spec.id, replace_existing=True)
    return scheduler
