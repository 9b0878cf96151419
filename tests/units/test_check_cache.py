"""Synapse's verdict is reused while nothing it read changed (units/check_cache.py): `synsup
start` checked twice and `synsup check` always ran Synapse's loader (2-5 s)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from helpers import FAKE_SYNAPSE, modern_deployment, write_deployment

from synsup.units.check import check_deployment
from synsup.units.check_cache import CACHE_FILE, CheckCache


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """(a python that counts its runs in a file, that file, the fake Synapse's __init__.py)."""
    site = tmp_path / "site"
    shutil.copytree(os.path.join(FAKE_SYNAPSE, "synapse"), site / "synapse")
    monkeypatch.setenv("PYTHONPATH", str(site))
    runs = tmp_path / "runs"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho run >> {runs}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return str(python), runs, site / "synapse" / "__init__.py"


@pytest.fixture
def state(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return str(path)


def loader_runs(runs) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def checked(tmp_path, python, state, **changes):
    shared, workers = modern_deployment()
    shared.update(changes)
    config, workers_dir = write_deployment(str(tmp_path / "d"), shared, workers)
    return check_deployment([config], workers_dir, python, cache=CheckCache(state))


def test_a_passing_check_is_reused_until_a_config_file_changes(tmp_path, counted, state):
    python, runs, _ = counted
    first = checked(tmp_path, python, state)
    again = checked(tmp_path, python, state)
    assert first.ok and again.ok and loader_runs(runs) == 1
    assert again.synapse_version == first.synapse_version == "1.163.0"
    assert again.synapse_file == first.synapse_file
    checked(tmp_path, python, state, event_cache_size="20K")
    assert loader_runs(runs) == 2


def test_a_failing_check_is_never_reused(tmp_path, counted, state):
    python, runs, _ = counted
    assert not checked(tmp_path, python, state, event_cache_size="lots").ok
    assert not checked(tmp_path, python, state, event_cache_size="lots").ok
    assert loader_runs(runs) == 2


def test_a_new_synapse_install_or_environment_checks_again(tmp_path, counted, state, monkeypatch):
    python, runs, package = counted
    checked(tmp_path, python, state)
    package.write_text(package.read_text() + "\n")  # as `pip install -U` replaces the package
    os.utime(package, ns=(1, 1))
    checked(tmp_path, python, state)
    monkeypatch.setenv("SYNAPSE_FAKE_VERSION", "1.164.0")
    assert checked(tmp_path, python, state).synapse_version == "1.164.0"
    assert loader_runs(runs) == 3


def test_a_named_file_that_changes_checks_again(tmp_path, counted, state):
    python, runs, _ = counted
    key = tmp_path / "signing.key"
    key.write_text("a")
    checked(tmp_path, python, state, signing_key_path=str(key))
    key.write_text("bb")
    checked(tmp_path, python, state, signing_key_path=str(key))
    assert loader_runs(runs) == 2


def test_the_cache_is_0600_and_one_not_ours_or_open_to_others_is_ignored(tmp_path, counted, state):
    python, runs, _ = counted
    checked(tmp_path, python, state)
    path = os.path.join(state, CACHE_FILE)
    assert os.stat(path).st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)
    checked(tmp_path, python, state)
    assert loader_runs(runs) == 2


def test_an_unreadable_cache_is_ignored_and_replaced(tmp_path, counted, state):
    python, runs, _ = counted
    with open(os.path.join(state, CACHE_FILE), "w") as f:
        f.write("{not json")
    os.chmod(os.path.join(state, CACHE_FILE), 0o600)
    assert checked(tmp_path, python, state).ok
    with open(os.path.join(state, CACHE_FILE)) as f:
        assert len(json.load(f)) == 1


def test_without_a_state_dir_the_user_cache_dir_is_used(tmp_path, counted, monkeypatch):
    python, runs, _ = counted
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    missing = str(tmp_path / "no-state-dir")
    checked(tmp_path, python, missing)
    checked(tmp_path, python, missing)
    assert loader_runs(runs) == 1 and not os.path.exists(missing)
    assert os.stat(tmp_path / "xdg" / "synsup").st_mode & 0o777 == 0o700
