"""The one policy: may this person take this action on this record?

Commands and buttons alike reach the domain, and the domain asks :func:`allowed` before
it changes or shows anything. Roles add up: a person with several roles may do what any of
them may.
"""

from __future__ import annotations

from enum import StrEnum

from rounds.db.models import Incident
from rounds.itsm.people import Person


class Action(StrEnum):
    """Actions, named as the audit trail names them."""

    REPORT = "report"
    LIST = "list"
    VIEW = "view"
    ACK = "ack"
    ASSIGN = "assign"
    PRIORITY = "priority"
    NOTE = "note"
    RESOLVE = "resolve"
    REOPEN = "reopen"
    CLOSE = "close"
    ONCALL = "oncall"
    WHOAMI = "whoami"
    HELP = "help"


EVERYONE = frozenset({Action.REPORT, Action.LIST, Action.ONCALL, Action.WHOAMI, Action.HELP})
INCIDENT_WORK = frozenset(
    {
        Action.VIEW,
        Action.ACK,
        Action.ASSIGN,
        Action.PRIORITY,
        Action.NOTE,
        Action.RESOLVE,
        Action.REOPEN,
        Action.CLOSE,
    }
)
# What a reporter may do with their own incident: follow it, add to it, reopen it when the
# fix did not hold, and confirm the fix by closing it.
OWN_REPORT = frozenset({Action.VIEW, Action.NOTE, Action.REOPEN, Action.CLOSE})
# A vendor engineer works only what is assigned to them, and never triages.
VENDOR_ASSIGNED = frozenset({Action.VIEW, Action.ACK, Action.NOTE, Action.RESOLVE})
TEAM_ROLES = ("engineer", "manager", "admin")


def allowed(person: Person, action: Action, incident: Incident | None = None) -> bool:
    """Decide ``action`` for ``person``, on ``incident`` when the action concerns one."""
    if action in EVERYONE:
        return True
    if person.has(*TEAM_ROLES):
        return action in INCIDENT_WORK
    if incident is None:
        return False
    if incident.reporter == person.name and action in OWN_REPORT:
        return True
    return person.has("vendor") and incident.assignee == person.name and action in VENDOR_ASSIGNED


def sees_all_incidents(person: Person) -> bool:
    return person.has(*TEAM_ROLES)


def can_be_assigned(person: Person) -> bool:
    return person.known and person.has(*TEAM_ROLES, "vendor")


def may_ever(person: Person, action: Action) -> bool:
    """Whether some record exists on which ``person`` may take ``action`` (for help)."""
    if action in EVERYONE or (person.has(*TEAM_ROLES) and action in INCIDENT_WORK):
        return True
    if action in OWN_REPORT:
        return True
    return person.has("vendor") and action in VENDOR_ASSIGNED
