"""A real PostgreSQL server for the tests, started from Debian's binaries in a temporary folder.

``PostgresServer.start()`` runs ``initdb`` into a fresh folder and ``pg_ctl start`` on a free local
port (and a unix socket in that folder), as the ``postgres`` system user when the tests run as
root (PostgreSQL refuses to run as root). ``find_binaries()`` returns ``None`` when no PostgreSQL is
installed; the fixtures then skip with a message saying how to install it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL is not installed (apt-get install postgresql; scripts/dev.py check installs it as root)"
)


def find_binaries() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``: Debian's newest, or the ones on PATH."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bin: Path
    root: Path
    port: int
    user: str | None  # run the server as this system user (None: as ourselves)
    _databases: int = field(default=0)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, check=check, cwd=self.root)

    @classmethod
    def start(cls) -> PostgresServer:
        binaries = find_binaries()
        if binaries is None:
            raise FileNotFoundError(INSTALL_HINT)
        root = Path(tempfile.mkdtemp(prefix="flock-pg-"))
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
                pw = pwd.getpwnam(user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        server = cls(binaries, root, _free_port(), user)
        server._run(
            str(binaries / "initdb"), "-D", str(server.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        server.up()
        return server

    def up(self) -> None:
        # Test settings: no fsync (a killed *worker* is what the tests crash, never this server's
        # machine), a socket in our own folder, no stats or logging noise.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def down(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def create_database(self) -> str:
        """A new, empty database; returns its DSN."""
        import psycopg

        self._databases += 1
        name = f"t{self._databases}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.dsn(name)

    def stop(self) -> None:
        self.down("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
