"""The command line, run as a separate process the way an operator would run it."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from rounds.db.migrate import head_revision
from tests.conftest import write_config
from tests.running import clean_env

pytestmark = pytest.mark.slow

COMMANDS = ("run", "chat", "incidents", "audit", "check-config", "db")
PROCESS_TIMEOUT = 120
SCRIPT = """\
report printer jammed at outpatient window 3
as eng.wang
ack INC-1
resolve INC-1 fixed
"""


# --- running rounds ---------------------------------------------------------------------------


def rounds(
    cwd: Path, *args: str | Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rounds ARGS`` in ``cwd`` and wait for it to finish."""
    return subprocess.run(
        [sys.executable, "-m", "rounds", *map(str, args)],
        cwd=cwd,
        env=env or clean_env(),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def start_rounds(cwd: Path, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rounds", *map(str, args)],
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait for a started process (killing it if it hangs); return code, stdout, stderr."""
    try:
        out, err = process.communicate(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A good configuration: English, data under tmp_path/data."""
    return write_config(tmp_path / "f.toml")


@pytest.fixture
def bad_cfg(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "bad.toml",
        '[escalation]\nack_minutes = { P1 = "soon", P2 = 15, P3 = 30, P4 = 240 }\n',
    )


@pytest.fixture
def handled(tmp_path: Path, cfg: Path) -> str:
    """INC-1 reported by nurse.li, taken and resolved by eng.wang; the chat's output."""
    return ok(rounds(tmp_path, "--config", cfg, "chat", "--as", "nurse.li", stdin=SCRIPT))


def incidents_json(tmp_path: Path, cfg: Path, *more: str) -> list[dict]:
    return json.loads(ok(rounds(tmp_path, "--config", cfg, "incidents", "list", "--json", *more)))


def assert_iso_with_offset(value: str | None, *, may_be_null: bool) -> None:
    if value is None:
        assert may_be_null
        return
    assert datetime.fromisoformat(value).utcoffset() is not None, value


# --- help -------------------------------------------------------------------------------------


def test_help_lists_every_command(tmp_path):
    out = ok(rounds(tmp_path, "--help"))

    assert "--config FILE" in out
    for command in COMMANDS:
        assert re.search(rf"^\s+{re.escape(command)}\s", out, re.MULTILINE), command


def test_rounds_without_arguments_prints_help(tmp_path):
    result = rounds(tmp_path)

    assert result.returncode == 0
    assert result.stdout.startswith("usage: rounds")
    for command in COMMANDS:
        assert command in result.stdout


def test_unknown_command_is_a_usage_error(tmp_path):
    result = rounds(tmp_path, "dance")

    assert result.returncode == 2
    assert "invalid choice: 'dance'" in result.stderr


# --- configuration ------------------------------------------------------------------------------


def test_check_config_accepts_a_good_file(tmp_path, cfg):
    out = ok(rounds(tmp_path, "--config", cfg, "check-config"))

    assert out.startswith(f"{cfg}: ok (5 people")
    assert "database sqlite" in out


def test_check_config_refuses_a_bad_file_in_one_line_naming_file_and_key(tmp_path, bad_cfg):
    result = rounds(tmp_path, "--config", bad_cfg, "check-config")

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rounds: configuration error: {bad_cfg}: ")
    assert "[escalation] ack_minutes.P1" in lines[0]
    assert "Traceback" not in result.stderr


def test_check_config_refuses_a_missing_file(tmp_path):
    result = rounds(tmp_path, "--config", "nowhere.toml", "check-config")

    assert result.returncode == 2
    assert result.stderr == (
        "rounds: configuration error: nowhere.toml: no such configuration file\n"
    )


def test_check_config_names_the_environment_variable_at_fault(tmp_path, cfg):
    env = clean_env(ROUNDS_HTTP_LISTEN="8080")

    result = rounds(tmp_path, "--config", cfg, "check-config", env=env)

    assert result.returncode == 2
    assert "environment variable ROUNDS_HTTP_LISTEN: [http] listen" in result.stderr


def test_check_config_reads_rounds_config_from_the_environment(tmp_path, cfg):
    env = clean_env(ROUNDS_CONFIG=str(cfg))

    out = ok(rounds(tmp_path, "check-config", env=env))

    assert out.startswith(f"{cfg}: ok")


def test_check_config_without_any_file_uses_the_embedded_defaults(tmp_path):
    out = ok(rounds(tmp_path, "check-config"))

    assert out.startswith("embedded defaults: ok (5 people")


def test_run_with_a_bad_file_exits_2_without_starting(tmp_path, bad_cfg):
    result = rounds(tmp_path, "--config", bad_cfg, "run")

    assert result.returncode == 2
    assert result.stderr.startswith(f"rounds: configuration error: {bad_cfg}: ")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
    assert list(tmp_path.iterdir()) == [bad_cfg]


def test_check_config_accepts_only_ack_minutes_a_report_can_be_filed_with(tmp_path, cfg):
    env = clean_env(ROUNDS_ESCALATION_ACK_MINUTES="{ P1 = inf, P2 = inf, P3 = inf, P4 = inf }")

    checked = rounds(tmp_path, "--config", cfg, "check-config", env=env)
    chat = rounds(
        tmp_path,
        "--config",
        cfg,
        "chat",
        "--as",
        "nurse.li",
        stdin="report printer jammed at outpatient window 3\n",
        env=env,
    )

    assert checked.returncode == 2 or "Filed INC-1" in chat.stdout, chat.stdout


# --- chat -------------------------------------------------------------------------------------


def test_chat_script_prints_every_reply_and_every_post(handled):
    out = handled

    assert out.startswith("Rounds console. You are 李护士·门诊 (nurse.li).")
    assert "✅ Filed INC-1" in out
    assert "You are now 王工 (eng.wang)." in out
    assert "👍 You acknowledged INC-1" in out
    assert "✅ INC-1 is resolved" in out
    assert re.search(
        r"^\[#ops\] \S+ P[1-4] INC-1 printer jammed at outpatient window 3$", out, re.MULTILINE
    )
    assert re.search(r"^\[@eng\.(wang|zhao)\] .*New incident INC-1", out, re.MULTILINE)
    assert "[@nurse.li] 👷 Your report INC-1" in out
    assert "[@nurse.li] ✅ Your report INC-1" in out


def test_chat_exits_0_at_end_of_input(tmp_path, cfg):
    result = rounds(tmp_path, "--config", cfg, "chat", "--as", "eng.zhao", stdin="whoami\n")

    assert result.returncode == 0
    assert "eng.zhao" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_second_chat_process_sees_the_incident_of_the_first(tmp_path, cfg, handled):
    out = ok(
        rounds(tmp_path, "--config", cfg, "chat", "--as", "eng.zhao", stdin="incidents all\n")
    )

    assert "All incidents (1):" in out
    assert "INC-1 [resolved] printer jammed at outpatient window 3" in out


def test_chat_with_a_bad_file_exits_2(tmp_path, bad_cfg):
    result = rounds(tmp_path, "--config", bad_cfg, "chat", "--as", "nurse.li", stdin="help\n")

    assert result.returncode == 2
    assert "rounds: configuration error" in result.stderr


# --- incidents list ---------------------------------------------------------------------------


def test_incidents_list_json_describes_each_incident(tmp_path, cfg, handled):
    ok(
        rounds(
            tmp_path,
            "--config",
            cfg,
            "chat",
            "--as",
            "nurse.li",
            stdin="report network slow in ward 5\n",
        )
    )

    items = incidents_json(tmp_path, cfg)

    assert [i["id"] for i in items] == ["INC-1", "INC-2"]
    first, second = items
    assert first["title"] == "printer jammed at outpatient window 3"
    assert (first["status"], first["reporter"], first["assignee"]) == (
        "resolved",
        "nurse.li",
        "eng.wang",
    )
    assert (second["status"], second["reporter"], second["assignee"]) == ("open", "nurse.li", None)
    for item in items:
        assert item["priority"] in {"P1", "P2", "P3", "P4"}
        assert_iso_with_offset(item["created_at"], may_be_null=False)
        assert_iso_with_offset(item["acknowledged_at"], may_be_null=True)
        assert_iso_with_offset(item["resolved_at"], may_be_null=True)
    assert first["acknowledged_at"] is not None and first["resolved_at"] is not None
    assert second["acknowledged_at"] is None and second["resolved_at"] is None


def test_incidents_list_filters_by_status(tmp_path, cfg, handled):
    ok(
        rounds(
            tmp_path,
            "--config",
            cfg,
            "chat",
            "--as",
            "nurse.li",
            stdin="report network slow in ward 5\n",
        )
    )

    assert [i["id"] for i in incidents_json(tmp_path, cfg, "--status", "open")] == ["INC-2"]
    assert [i["id"] for i in incidents_json(tmp_path, cfg, "--status", "resolved")] == ["INC-1"]
    assert incidents_json(tmp_path, cfg, "--status", "closed") == []


def test_incidents_list_prints_a_readable_line_per_incident(tmp_path, cfg, handled):
    out = ok(rounds(tmp_path, "--config", cfg, "incidents", "list"))

    lines = out.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"INC-1\s+P[1-4] resolved\s+eng\.wang\s+printer jammed at outpatient "
        r"window 3",
        lines[0],
    )


def test_incidents_list_on_an_empty_database_prints_an_empty_array(tmp_path, cfg):
    assert incidents_json(tmp_path, cfg) == []
    assert ok(rounds(tmp_path, "--config", cfg, "incidents", "list")) == "no incidents\n"


def test_incidents_list_refuses_an_unknown_status(tmp_path, cfg):
    result = rounds(tmp_path, "--config", cfg, "incidents", "list", "--status", "lost")

    assert result.returncode == 2
    assert "invalid choice: 'lost'" in result.stderr


# --- audit ------------------------------------------------------------------------------------


def audit_lines(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_audit_names_actions_in_english_with_actor_record_and_transport(tmp_path, cfg, language):
    env = clean_env(ROUNDS_ROUNDS_LANGUAGE=language)
    ok(rounds(tmp_path, "--config", cfg, "chat", "--as", "nurse.li", stdin=SCRIPT, env=env))

    out = ok(rounds(tmp_path, "--config", cfg, "audit", env=env))

    rows = [words[1:6] for words in audit_lines(out)]
    assert rows == [
        ["nurse.li", "report", "INC-1", "console", "ok"],
        ["eng.wang", "ack", "INC-1", "console", "ok"],
        ["eng.wang", "resolve", "INC-1", "console", "ok"],
    ]
    for words in audit_lines(out):
        assert_iso_with_offset(words[0], may_be_null=False)


def test_audit_since_an_age_includes_what_just_happened(tmp_path, cfg, handled):
    out = ok(rounds(tmp_path, "--config", cfg, "audit", "--since", "1h"))

    assert [words[2] for words in audit_lines(out)] == ["report", "ack", "resolve"]


def test_audit_since_a_future_date_shows_nothing(tmp_path, cfg, handled):
    assert ok(rounds(tmp_path, "--config", cfg, "audit", "--since", "2999-01-01")) == ""
    assert (
        json.loads(
            ok(rounds(tmp_path, "--config", cfg, "audit", "--since", "2999-01-01", "--json"))
        )
        == []
    )


def test_audit_since_something_unreadable_exits_2_with_a_sentence(tmp_path, cfg):
    result = rounds(tmp_path, "--config", cfg, "audit", "--since", "yesterdayish")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("rounds: --since 'yesterdayish': give a date")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_audit_json_lists_entries(tmp_path, cfg, handled):
    entries = json.loads(ok(rounds(tmp_path, "--config", cfg, "audit", "--json")))

    assert [
        (e["actor"], e["action"], e["record"], e["transport"], e["result"]) for e in entries
    ] == [
        ("nurse.li", "report", "INC-1", "console", "ok"),
        ("eng.wang", "ack", "INC-1", "console", "ok"),
        ("eng.wang", "resolve", "INC-1", "console", "ok"),
    ]
    assert entries[2]["detail"] == "fixed"
    for entry in entries:
        assert_iso_with_offset(entry["at"], may_be_null=False)


def test_audit_on_an_empty_database_shows_nothing(tmp_path, cfg):
    assert ok(rounds(tmp_path, "--config", cfg, "audit")) == ""


# --- db upgrade -------------------------------------------------------------------------------


def schema_versions(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "data" / "rounds.db") as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def test_db_upgrade_creates_the_schema_then_does_nothing(tmp_path, cfg):
    first = ok(rounds(tmp_path, "--config", cfg, "db", "upgrade"))
    second = ok(rounds(tmp_path, "--config", cfg, "db", "upgrade"))

    head = head_revision()
    assert first == f"database at revision {head} (upgraded)\n"
    assert second == f"database at revision {head}\n"
    assert schema_versions(tmp_path) == [head]


def test_two_db_upgrades_started_together_both_succeed_with_one_schema(tmp_path, cfg):
    processes = [start_rounds(tmp_path, "--config", cfg, "db", "upgrade") for _ in range(2)]

    results = [finish(p) for p in processes]

    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    upgraded = [out for _, out, _ in results if "(upgraded)" in out]
    assert len(upgraded) == 1, [out for _, out, _ in results]
    assert schema_versions(tmp_path) == [head_revision()]


def test_run_on_a_port_already_in_use_says_so_and_exits_1(tmp_path, cfg):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(ROUNDS_HTTP_LISTEN=f"127.0.0.1:{port}")

        result = rounds(tmp_path, "--config", cfg, "run", env=env)

    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
