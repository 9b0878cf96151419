"""A PostgreSQL cluster of the test's own, for Synapse processes in network namespaces (they
cannot reach the machine's cluster on 127.0.0.1 of the root namespace): initdb into a temp dir
as the postgres user, listening on one address (the bridge's) and a port below 32768, role
synsup/synsup as its superuser, the address's /24 let in with that password. Stopped and its
files removed afterwards. Needs root (to become postgres) and Debian's PostgreSQL binaries."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from helpers import free_ports

ROLE = {"user": "synsup", "password": "synsup"}


def postgres_bin() -> str | None:
    """The newest /usr/lib/postgresql/VERSION/bin that has initdb, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def why_no_postgres() -> str:
    """"" when a cluster of our own can be made here, else why not (the skip reason)."""
    if postgres_bin() is None:
        return "PostgreSQL's initdb is not installed (apt-get install postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no postgres user to run a PostgreSQL cluster of the test's own"
    if os.geteuid() != 0:
        return "running a PostgreSQL cluster as the postgres user needs root"
    return ""


class OwnPostgres:
    def __init__(self, host: str) -> None:
        self.host, self.port = host, free_ports(1)[0]
        self.bin = postgres_bin() or "/nonexistent"
        self.dir = tempfile.mkdtemp(prefix="synsup-pg-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
        self.data = os.path.join(self.dir, "data")
        postgres = pwd.getpwnam("postgres")
        os.chown(self.dir, postgres.pw_uid, postgres.pw_gid)

    def _as_postgres(self, program: str, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.bin, program), *args],
                       check=True, capture_output=True, text=True, timeout=120, cwd=self.dir)

    def start(self) -> None:
        password = os.path.join(self.dir, "password")
        with open(password, "w") as f:
            f.write(ROLE["password"] + "\n")
        shutil.chown(password, "postgres")
        self._as_postgres("initdb", "-D", self.data, "-U", ROLE["user"], f"--pwfile={password}",
                          "-A", "scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        network = self.host.rsplit(".", 1)[0] + ".0/24"
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write(f"host all all {network} scram-sha-256\n")
        options = (f"-c listen_addresses={self.host} -p {self.port} -k {self.dir} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._as_postgres("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-o", options,
                          "-w", "-t", "60", "start")

    def stop(self) -> None:
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self._as_postgres("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def own_postgres(host: str) -> Iterator[OwnPostgres]:
    """For a fixture: `yield from own_postgres(address)`; the caller has checked why_no_postgres()."""
    server = OwnPostgres(host)
    try:
        server.start()
        yield server
    finally:
        server.stop()
