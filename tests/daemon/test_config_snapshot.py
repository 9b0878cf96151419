"""Copies of an accepted config in the state dir: what units read, whatever is on disk later."""

from __future__ import annotations

import os

from synsup.supervisor.daemon.config_snapshot import ConfigSnapshot, prune
from synsup.supervisor.source import Loaded
from synsup.supervisor.spec import UnitSpec


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


def test_units_read_copies_of_files_and_conf_d_with_their_keys_directory(tmp_path):
    etc, state = tmp_path / "etc", tmp_path / "config"
    (etc / "conf.d").mkdir(parents=True)
    write(etc / "homeserver.yaml", "server_name: a\n")
    write(etc / "conf.d" / "10-db.yaml", "database: {}\n")
    write(etc / "conf.d" / "README", "not read by Synapse\n")
    argv = ("python", "-m", "app", "-c", str(etc / "homeserver.yaml"), "-c", str(etc / "conf.d"))
    spec = UnitSpec(name="main", argv=argv, args_when_copied=("--keys-directory", str(etc / "conf.d")))
    snapshot = ConfigSnapshot.take(str(state), 1, Loaded([spec], watch_paths=[str(etc)]))
    write(etc / "homeserver.yaml", "server_name: [broken\n")  # an edit after the copy
    copied = snapshot.specs()["main"].argv
    assert copied[:3] == argv[:3] and copied[-2:] == ("--keys-directory", str(etc / "conf.d"))
    config, conf_d = copied[4], copied[6]
    assert config.startswith(str(state)) and read(config) == "server_name: a\n"
    assert sorted(os.listdir(conf_d)) == ["10-db.yaml"]
    prune(str(state), [spec])  # no spec reads the copies: gone
    assert os.listdir(state) == []
