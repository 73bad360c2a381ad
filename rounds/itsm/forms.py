"""Forms in progress: one per person and chat, kept in the database so that a form
survives a restart, and dropped when left unanswered too long.

The questions and the parsing of answers belong to the commands that use a form; this
module owns only its life: start, lock, advance, finish, expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rounds.db.models import Form
from rounds.itsm import notify
from rounds.itsm.context import Env
from rounds.reply import Reply


@dataclass(frozen=True)
class Owner:
    transport: str
    chat: str
    person: str


def lifetime(env: Env) -> timedelta:
    return timedelta(minutes=env.config.forms.expire_minutes)


def get(session: Session, owner: Owner, *, lock: bool = False) -> Form | None:
    """The owner's form; ``lock`` holds its row until the transaction ends."""
    query = select(Form).where(
        Form.transport == owner.transport, Form.chat == owner.chat, Form.person == owner.person
    )
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def state(session: Session, env: Env, owner: Owner) -> str | None:
    """ "active", or "expired" (the form is dropped now), or None when there is no form."""
    form = get(session, owner, lock=True)
    if form is None:
        return None
    if form.expires_at > env.now():
        return "active"
    session.delete(form)
    return "expired"


def start(session: Session, env: Env, owner: Owner, kind: str, first_step: str) -> Form:
    """Begin a form, or begin it again when one is open already."""
    now = env.now()
    form = get(session, owner, lock=True)
    if form is None:
        form = Form(transport=owner.transport, chat=owner.chat, person=owner.person)
        session.add(form)
    form.kind = kind
    form.step = first_step
    form.data = {}
    form.started_at = now
    form.expires_at = now + lifetime(env)
    return form


def advance(env: Env, form: Form, answer: object, next_step: str) -> None:
    """Keep the answer to the current step and move on; the form lives a while longer."""
    form.data = {**form.data, form.step: answer}
    form.step = next_step
    form.expires_at = env.now() + lifetime(env)


def finish(session: Session, form: Form) -> bool:
    """Remove the form; False when it was already gone (a double tap, a second process)."""
    result = session.execute(
        delete(Form)
        .where(Form.id == form.id, Form.step == form.step)
        .execution_options(synchronize_session=False)
    )
    session.expunge(form)
    return result.rowcount == 1


def expire(session: Session, env: Env) -> list[Owner]:
    """Drop every form left unanswered too long, and tell its owner; return the owners."""
    forms = list(
        session.scalars(select(Form).where(Form.expires_at <= env.now()).with_for_update())
    )
    for form in forms:
        session.delete(form)
        notify.notify(session, env, notify.person(form.person), Reply(env.words.t("form.expired")))
    return [Owner(f.transport, f.chat, f.person) for f in forms]
