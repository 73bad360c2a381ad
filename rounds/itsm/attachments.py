"""Files kept with incidents: stored under the data folder, recorded and audited.

A transport downloads a photo and calls :func:`store`; only what it stored ever becomes an
attachment (paths never come from what people type).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from rounds.db.models import Attachment, Incident
from rounds.itsm import audit
from rounds.itsm.context import Env

FOLDER = "attachments"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def store(data_dir: Path, content: bytes, suffix: str, now: datetime) -> str:
    """Write ``content`` under the data folder; return its path relative to that folder."""
    suffix = suffix.lower() if suffix.lower() in SUFFIXES else ".jpg"
    relative = Path(FOLDER) / now.strftime("%Y-%m") / f"{uuid.uuid4().hex}{suffix}"
    target = data_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    return relative.as_posix()


def path_of(env: Env, relative: str) -> Path:
    """The file of a stored attachment; refuses anything outside the attachments folder."""
    root = (env.config.rounds.data_dir / FOLDER).resolve()
    target = (env.config.rounds.data_dir / relative).resolve()
    if root not in target.parents:
        raise ValueError("not a stored attachment")
    return target


def attach(
    session: Session, env: Env, incident: Incident, relative: str, *, by: str, via: str
) -> Attachment:
    """Record a stored photo as part of ``incident``; the audit trail says who added it."""
    size = path_of(env, relative).stat().st_size
    attachment = Attachment(
        incident_id=incident.id,
        kind="photo",
        path=relative,
        size=size,
        added_by=by,
        added_at=env.now(),
    )
    session.add(attachment)
    audit.record(
        session,
        at=env.now(),
        actor=by,
        action="attach",
        record=incident.ref,
        via=via,
        detail=f"photo size={size}",
    )
    return attachment


def of_incident(session: Session, incident_id: int) -> list[Attachment]:
    query = select(Attachment).where(Attachment.incident_id == incident_id)
    return list(session.scalars(query.order_by(Attachment.id)))
