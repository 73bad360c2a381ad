"""The headless bot (`rounds run` with no terminal): health, metrics, and a console beside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.running import clean_env, free_port

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 20
STOP_SECONDS = 15
PROCESS_TIMEOUT = 120


# --- processes --------------------------------------------------------------------------------


def stop(process: subprocess.Popen) -> int:
    """SIGTERM the process by its id, wait a bounded time, SIGKILL as a last resort."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_SECONDS)
    return process.returncode


@dataclass
class Bot:
    process: subprocess.Popen
    config: Path
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str, str]:
        """GET ``path``: status, Content-Type and body, for error statuses too."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=10) as response:
                return (
                    response.status,
                    response.headers["Content-Type"],
                    response.read().decode("utf-8"),
                )
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers["Content-Type"], error.read().decode("utf-8")

    def health(self) -> dict:
        status, _, body = self.get("/healthz")
        assert status == 200, body
        return json.loads(body)


def wait_until_serving(bot: Bot) -> None:
    """Poll /healthz until it answers, for at most STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if bot.process.poll() is not None:
            pytest.fail(
                f"rounds run exited with {bot.process.returncode}: "
                f"{bot.log.read_text(encoding='utf-8')}"
            )
        try:
            with urllib.request.urlopen(bot.url("/healthz"), timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    pytest.fail(
        f"rounds run did not answer on port {bot.port} within {STARTUP_SECONDS} s: "
        f"{bot.log.read_text(encoding='utf-8')}"
    )


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[Bot]:
    """`rounds run` serving headless (stdin is not a terminal) on a free local port."""
    port = free_port()
    config = write_config(tmp_path / "f.toml", f'[http]\nlisten = "127.0.0.1:{port}"\n')
    log = tmp_path / "run.log"
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "rounds", "--config", str(config), "run"],
            cwd=tmp_path,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = Bot(process, config, port, log)
    try:
        wait_until_serving(running)
        yield running
    finally:
        stop(process)


def chat(bot: Bot, person: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rounds", "--config", str(bot.config), "chat", "--as", person],
        cwd=bot.config.parent,
        env=clean_env(),
        input=script,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


# --- the tests --------------------------------------------------------------------------------


def test_healthz_reports_database_and_outbox(bot):
    status, content_type, body = bot.get("/healthz")

    assert status == 200
    assert content_type.startswith("application/json")
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["database"] == "ok"
    assert health["outbox"]["pending"] == 0
    assert health["transports"] == ["console"]


def test_metrics_are_prometheus_text_with_the_command_counter(bot):
    status, content_type, body = bot.get("/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    assert "# HELP rounds_" in body
    assert "# TYPE rounds_commands_total counter" in body


def test_an_unknown_path_is_not_found(bot):
    status, _, _ = bot.get("/nowhere")

    assert status == 404


def test_headless_bot_creates_its_database(bot):
    assert (bot.config.parent / "data" / "rounds.db").exists()


def test_sigterm_stops_the_bot_cleanly(bot):
    os.kill(bot.process.pid, signal.SIGTERM)

    assert bot.process.wait(timeout=STOP_SECONDS) == 0
    assert "rounds stopped" in bot.log.read_text(encoding="utf-8")


def test_a_chat_beside_the_headless_bot_delivers_its_own_posts(bot):
    result = chat(bot, "nurse.li", "report printer jammed at outpatient window 3\n")

    assert result.returncode == 0, result.stderr
    assert "✅ Filed INC-1" in result.stdout
    assert "INC-1 printer jammed at outpatient window 3" in result.stdout
    assert "[#ops] " in result.stdout
    assert "[@eng." in result.stdout and "New incident INC-1" in result.stdout
    assert bot.health()["outbox"]["pending"] == 0


def test_the_headless_bot_keeps_serving_while_chats_share_its_database(bot):
    filed = chat(bot, "nurse.li", "report printer jammed at outpatient window 3\n")
    assert filed.returncode == 0, filed.stderr

    listing = chat(bot, "eng.zhao", "incidents\n")

    assert "Open incidents (1):" in listing.stdout and "INC-1 [open]" in listing.stdout
    assert bot.process.poll() is None
    assert bot.health()["status"] == "ok"
