"""The migrations build exactly the schema the models describe, once."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from rounds.db import migrate
from rounds.db.engine import Database
from rounds.db.models import Base


def test_migrations_match_the_models(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    assert migrate.upgrade(db.engine) is True

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []


def test_upgrade_at_head_does_nothing(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    migrate.upgrade(db.engine)

    assert migrate.upgrade(db.engine) is False
    assert migrate.current_revision(db.engine) == migrate.head_revision()
    db.dispose()


def test_concurrent_upgrades_apply_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    results: list[bool] = []
    errors: list[BaseException] = []

    def upgrade() -> None:
        db = Database(url)
        try:
            results.append(migrate.upgrade(db.engine))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(results) == [False, False, False, True]
    db = Database(url)
    assert "incidents" in inspect(db.engine).get_table_names()
    db.dispose()
