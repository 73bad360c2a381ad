"""A PostgreSQL run that cannot start fails the suite when it is required (as in CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run_one_postgres_test(tmp_path: Path, require: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUNDS_")}
    env["ROUNDS_PG_BIN"] = str(tmp_path / "no-postgres-here")
    if require:
        env["ROUNDS_REQUIRE_POSTGRES"] = "1"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_incident_scenarios.py",
            "-k",
            "postgresql",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_postgres_fails_the_run_when_required(tmp_path):
    result = run_one_postgres_test(tmp_path, require=True)

    assert result.returncode != 0
    assert "PostgreSQL server binaries are not installed" in result.stdout


def test_missing_postgres_is_a_visible_skip_otherwise(tmp_path):
    result = run_one_postgres_test(tmp_path, require=False)

    assert result.returncode == 0
    assert "skipped" in result.stdout
