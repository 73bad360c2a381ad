"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests and benchmarks.

It uses the installed server binaries (``/usr/lib/postgresql/<version>/bin``). initdb
refuses to run as root, so as root the cluster belongs to the ``postgres`` user; the
postmaster is started directly (not through pg_ctl), so the process id we hold is the
server's own and stopping it is a signal to that id.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def bin_dir() -> Path | None:
    """$ROUNDS_PG_BIN, else the newest installed PostgreSQL bin folder; None if there is none."""
    chosen = os.environ.get("ROUNDS_PG_BIN")
    if chosen:
        path = Path(chosen)
        return path if (path / "initdb").exists() and (path / "postgres").exists() else None
    found = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        if (path / "initdb").exists() and (path / "postgres").exists():
            try:
                found.append((int(path.parent.name), path))
            except ValueError:
                continue
    return max(found)[1] if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """Start with :meth:`start`, stop with :meth:`stop` (it also removes the files)."""

    def __init__(self) -> None:
        self.bin = bin_dir()
        self.root: Path | None = None
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._user: str | None = None

    def _run_as(self) -> dict:
        return {"user": self._user, "group": self._user} if self._user else {}

    def start(self) -> Cluster:
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries are not installed")
        self.root = Path(tempfile.mkdtemp(prefix="rounds-pg-"))
        data, sockets = self.root / "data", self.root / "sock"
        sockets.mkdir()
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            for path in (self.root, sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **self._run_as(),
        )
        self.port = free_port()
        log = open(self.root / "server.log", "wb")  # noqa: SIM115  (closed with the server)
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={sockets}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=log,
            **self._run_as(),
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_tail()}")
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log_tail(self) -> str:
        path = self.root / "server.log" if self.root else None
        return path.read_text(errors="replace")[-2000:] if path and path.exists() else ""

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str = "template0") -> str:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
