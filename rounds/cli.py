"""The command line: ``rounds [--config FILE] <command>``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select

from rounds import __version__
from rounds.config import PERSON_NAME, Config, ConfigError, load_config

log = logging.getLogger("rounds")
# The commands import the bot's modules inside their functions, so that `rounds --help`
# and `rounds check-config` answer without loading the web server and the scheduler.
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rounds",
        description="Rounds: chat-ops for hospital IT operations and maintenance.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $ROUNDS_CONFIG or ./rounds.toml)",
    )
    parser.add_argument("--version", action="version", version=f"rounds {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    sub.add_parser(
        "run",
        help="serve every configured transport, the HTTP server and the "
        "dispatcher until stopped (the console too on a terminal)",
    )

    chat = sub.add_parser(
        "chat",
        help="console chat against the same database; reads commands from stdin, one per line",
    )
    chat.add_argument(
        "--as",
        dest="person",
        required=True,
        metavar="PERSON",
        help="who you are, by [[people]] name",
    )

    incidents = sub.add_parser("incidents", help="incidents")
    inc_sub = incidents.add_subparsers(dest="action", metavar="<action>", required=True)
    listing = inc_sub.add_parser("list", help="list incidents, oldest first")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.add_argument(
        "--status",
        choices=["open", "acknowledged", "resolved", "closed"],
        help="only incidents in this status",
    )

    audit = sub.add_parser("audit", help="the audit trail: who did what, when, from where")
    audit.add_argument(
        "--since",
        metavar="WHEN",
        help="a date (2026-12-01), a local time (2026-12-01T08:00) or an age (30m, 24h, 7d)",
    )
    audit.add_argument("--json", action="store_true", help="print a JSON array")

    sub.add_parser("check-config", help="validate the configuration and exit")

    db = sub.add_parser("db", help="database operations")
    db_sub = db.add_subparsers(dest="action", metavar="<action>", required=True)
    db_sub.add_parser("upgrade", help="apply the database migrations")
    return parser


def _setup_logging(config: Config, quiet: bool = False) -> None:
    level = getattr(logging, config.rounds.log_level)
    if quiet and level < logging.WARNING:
        level = logging.WARNING
    # APScheduler says "Running job" at INFO on every run; httpx logs every request's URL
    # at INFO, and a Telegram URL holds the bot's token. Keep their warnings only.
    for noisy in ("apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def parse_since(value: str, config: Config, now: datetime) -> datetime:
    """An age (``30m``, ``24h``, ``7d``) or a local date or time, as an aware datetime."""
    age = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", value)
    if age:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[age.group(2)]
        try:
            return now - timedelta(**{unit: int(age.group(1))})
        except OverflowError:
            raise ValueError(f"--since {value!r} reaches back before year 1") from None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"--since {value!r}: give a date such as 2026-12-01, a time such as "
            "2026-12-01T08:00, or an age such as 24h"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=config.zone)


def _iso(moment: datetime | None, config: Config) -> str | None:
    return moment.astimezone(config.zone).isoformat() if moment else None


def cmd_run(config: Config) -> int:
    from rounds.bot.app import App
    from rounds.bot.console import stdin_is_terminal

    _setup_logging(config)
    app = App(config)
    app.upgrade()
    console_in = sys.stdin if stdin_is_terminal() else None
    try:
        asyncio.run(app.serve(console_in, sys.stdout))
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        print(
            f"rounds: cannot listen on {config.http.listen} ({exc.strerror}); "
            "choose another with [http] listen or ROUNDS_HTTP_LISTEN",
            file=sys.stderr,
        )
        return 1
    finally:
        app.close()
    return 0


def cmd_chat(config: Config, person: str) -> int:
    from rounds.bot.app import App

    if not PERSON_NAME.fullmatch(person):
        print(f"rounds: {person!r} is not a person name (such as eng.wang)", file=sys.stderr)
        return EXIT_CONFIG

    _setup_logging(config, quiet=True)
    app = App(config)
    app.upgrade()
    console = app.console(person, sys.stdout)
    try:
        asyncio.run(console.run(sys.stdin, interactive=sys.stdin.isatty()))
    finally:
        app.close()
    return 0


def cmd_incidents_list(config: Config, as_json: bool, status: str | None) -> int:
    from rounds.db.engine import Database
    from rounds.db.migrate import upgrade
    from rounds.db.models import Incident

    db = Database(config.database_url)
    upgrade(db.engine)
    query = select(Incident).order_by(Incident.id)
    if status:
        query = query.where(Incident.status == status)
    with db.session(write=False) as session:
        rows = list(session.scalars(query))
    db.dispose()
    items = [
        {
            "id": i.ref,
            "title": i.title,
            "status": i.status,
            "priority": i.priority,
            "impact": i.impact,
            "urgency": i.urgency,
            "major": i.major,
            "system": i.system,
            "reporter": i.reporter,
            "assignee": i.assignee,
            "created_at": _iso(i.created_at, config),
            "acknowledged_at": _iso(i.acknowledged_at, config),
            "resolved_at": _iso(i.resolved_at, config),
            "closed_at": _iso(i.closed_at, config),
        }
        for i in rows
    ]
    if as_json:
        print(json.dumps(items, ensure_ascii=False, indent=2))
        return 0
    for item in items:
        print(
            f"{item['id']:<8} {item['priority']} {item['status']:<12} "
            f"{item['assignee'] or '-':<12} {item['title']}"
        )
    if not items:
        print("no incidents")
    return 0


def cmd_audit(config: Config, since: str | None, as_json: bool) -> int:
    from rounds.db.engine import Database
    from rounds.db.migrate import upgrade
    from rounds.itsm import audit

    moment = None
    if since:
        try:
            moment = parse_since(since, config, datetime.now(config.zone))
        except ValueError as exc:
            print(f"rounds: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    db = Database(config.database_url)
    upgrade(db.engine)
    with db.session(write=False) as session:
        entries = audit.list_entries(session, since=moment)
    db.dispose()
    rows = [
        {
            "at": _iso(e.at, config),
            "actor": e.actor,
            "action": e.action,
            "record": e.record,
            "transport": e.transport,
            "result": e.result,
            "detail": e.detail,
        }
        for e in entries
    ]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        detail = (row["detail"] or "").replace("\n", " ")
        if len(detail) > 60:
            detail = detail[:59] + "…"
        print(
            f"{row['at']}  {row['actor']:<12} {row['action']:<9} {row['record'] or '-':<8} "
            f"{row['transport']:<8} {row['result']:<8} {detail}".rstrip()
        )
    return 0


def cmd_check_config(config: Config) -> int:
    people = len(config.people)
    print(
        f"{config.source}: ok ({people} people, {len(config.priority.rules)} priority rules, "
        f"database {config.database_url.split('://', 1)[0]})"
    )
    return 0


def cmd_db_upgrade(config: Config) -> int:
    from rounds.db.engine import Database
    from rounds.db.migrate import head_revision, upgrade

    _setup_logging(config)
    db = Database(config.database_url)
    applied = upgrade(db.engine)
    db.dispose()
    print(f"database at revision {head_revision()}" + (" (upgraded)" if applied else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"rounds: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "run":
        return cmd_run(config)
    if args.command == "chat":
        return cmd_chat(config, args.person)
    if args.command == "incidents":
        return cmd_incidents_list(config, args.json, args.status)
    if args.command == "audit":
        return cmd_audit(config, args.since, args.json)
    if args.command == "check-config":
        return cmd_check_config(config)
    if args.command == "db":
        return cmd_db_upgrade(config)
    parser.error(f"unknown command {args.command!r}")
    return EXIT_CONFIG
