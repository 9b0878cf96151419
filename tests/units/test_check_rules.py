"""One case per check rule, in both dialects: (mutation of a valid deployment) -> finding."""

from __future__ import annotations

import os
import sys

import pytest
from helpers import FAKE_SYNAPSE, legacy_deployment, listener, modern_deployment, worker, write_deployment

from synsup.units.check import check_deployment, run_rules
from synsup.units.loader import load_deployment

DIALECTS = {"modern": modern_deployment, "v1.66": legacy_deployment}


def check(tmp_path, shared, workers):
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    return check_deployment([config], workers_dir, "python-not-used", read_version=False)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_valid_deployment_has_no_errors(tmp_path, dialect):
    result = check(tmp_path, *DIALECTS[dialect]())
    assert result.errors == []
    assert result.warnings == []


def _set(path, value):
    def mutate(shared, workers):
        target = shared if path[0] == "shared" else workers[path[0]]
        for key in path[1:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _delete(path):
    def mutate(shared, workers):
        target = shared if path[0] == "shared" else workers[path[0]]
        for key in path[1:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def _add_worker(name, doc):
    def mutate(shared, workers):
        workers[name] = doc
    return mutate


# (rule, mutation, file the finding names, fragment of the message)
ERROR_CASES = [
    ("2-no-app", _delete(("generic1", "worker_app")), "generic1.yaml", "has no `worker_app`"),
    ("2-bad-app", _set(("generic1", "worker_app"), "synapse.app.nonsense"), "generic1.yaml",
     "is not one Synapse accepts; use one of: synapse.app.generic_worker"),
    ("2-main-with-worker-keys", _add_worker("main", {"worker_app": "synapse.app.homeserver", "worker_log_config": "x"}),
     "main.yaml", "main process file sets `worker_log_config`"),
    ("2-worker-file-says-homeserver", _add_worker("generic2", {"worker_app": "synapse.app.homeserver",
                                                               "worker_name": "generic2"}),
     "generic2.yaml", "makes this file the main process, but it sets `worker_name`: if it is a worker, set "
     "`worker_app: synapse.app.generic_worker`"),
    ("2-app-typo-of-homeserver", _set(("generic1", "worker_app"), "synapse.app.homserver"), "generic1.yaml",
     "did you mean synapse.app.homeserver (the main process)?"),
    ("2-app-typo-of-worker", _set(("generic1", "worker_app"), "synapse.app.generic_wroker"), "generic1.yaml",
     "did you mean synapse.app.generic_worker (a worker)?"),
    ("2-no-server-name", lambda s, w: s.pop("server_name"), "homeserver.yaml", "no `server_name`"),
    ("4-media-listener-without-media-repo",
     lambda s, w: (s.update(enable_media_repo=False),
                   w["generic1"].update(worker_listeners=[listener(8081, "client", "media")])),
     "generic1.yaml", "generic1: a `media` listener, but `enable_media_repo` is false for this process"),
    ("4-listener-on-redis", _set(("generic1", "worker_listeners"), [listener(6379, "client")]), "generic1.yaml",
     "takes the address of Redis"),
    ("5-writer-twice", _set(("shared", "stream_writers", "events"), ["persister1", "persister2", "persister1"]),
     "homeserver.yaml", "stream_writers.events: 'persister1' listed twice"),
    ("2-two-mains", lambda s, w: w.update(main1={"worker_app": "synapse.app.homeserver"},
                                          main2={"worker_app": "synapse.app.homeserver"}),
     "main2.yaml", "a second main process file"),
    ("3-duplicate-name", _add_worker("generic1copy", worker("generic1")), "generic1", "same instance name"),
    ("3-reserved-name", _add_worker("redis", worker("redis")), "redis.yaml", "reserved"),
    ("3-name-escapes-dirs", _set(("generic1", "worker_name"), "../../escape/victim"), "generic1.yaml",
     "cannot be a synsup unit name: use letters, digits"),
    ("3-name-too-long", _set(("generic1", "worker_name"), "g" * 96), "generic1.yaml", "at most 64 characters"),
    ("3-name-with-space", _set(("generic1", "worker_name"), "generic 1"), "generic1.yaml", "a log file name"),
    ("3-name-starts-with-dot", _set(("generic1", "worker_name"), ".hidden"), "generic1.yaml", "starting with a letter"),
    ("4-same-port", _set(("generic1", "worker_listeners"), [listener(9101, "client")]), "persister1.yaml",
     "uses the same address as generic1's listener"),
    ("4-wildcard-collides", _set(("generic1", "worker_listeners"),
                                 [{"type": "http", "port": 8008, "bind_addresses": ["0.0.0.0"],
                                   "resources": [{"names": ["client"]}]}]),
     "generic1.yaml", "uses the same address as main"),
    ("4-replication-listener", _set(("generic1", "worker_listeners"), [{"type": "replication", "port": 9200}]),
     "generic1.yaml", "`type: replication`"),
    ("4-replication-port", _set(("generic1", "worker_replication_port"), 9092), "generic1.yaml",
     "`worker_replication_port` is TCP replication"),
    ("5-unknown-stream", _set(("shared", "stream_writers", "eventz"), "persister1"), "homeserver.yaml",
     "unknown stream 'eventz'"),
    ("5-two-typing-writers", _set(("shared", "stream_writers", "typing"), ["persister1", "persister2"]),
     "homeserver.yaml", "typing takes exactly one"),
    ("5-writer-no-process", _set(("shared", "stream_writers", "events"), ["persister1", "ghost"]),
     "homeserver.yaml", "'ghost' is no process"),
    ("5-writer-not-in-instance-map", _delete(("shared", "instance_map", "persister2")), "homeserver.yaml",
     "writer 'persister2' is missing from `instance_map`"),
    ("5-writer-without-replication", _set(("persister2", "worker_listeners"), [listener(9102, "client")]),
     "persister2.yaml", "no http listener with the `replication` resource"),
    ("5-instance-map-wrong-port", _set(("shared", "instance_map", "persister1"), {"host": "127.0.0.1", "port": 9999}),
     "homeserver.yaml", "instance_map.persister1: 127.0.0.1:9999 matches no replication listener"),
    ("7-no-redis", _set(("shared", "redis"), {"enabled": False}), "homeserver.yaml", "workers need Redis"),
    ("7-sqlite", _set(("shared", "database"), {"name": "sqlite3", "args": {"database": "h.db"}}),
     "homeserver.yaml", "workers need PostgreSQL"),
    ("7-redis-password-file", _set(("shared", "redis", "password_path"), "/nonexistent/redis.pw"),
     "homeserver.yaml", "redis.password_path names '/nonexistent/redis.pw', which does not exist"),
    ("8-sender-no-process", _set(("shared", "federation_sender_instances"), ["sender9"]), "homeserver.yaml",
     "`federation_sender_instances` names 'sender9'"),
    ("8-pusher-no-process", _set(("shared", "pusher_instances"), ["pusher9"]), "homeserver.yaml",
     "`pusher_instances` names 'pusher9'"),
    ("8-background-no-process", _set(("shared", "run_background_tasks_on"), "bg"), "homeserver.yaml",
     "`run_background_tasks_on` names 'bg'"),
    ("8-userdir-no-process", _set(("shared", "update_user_directory_from_worker"), "ud"), "homeserver.yaml",
     "`update_user_directory_from_worker` names 'ud'"),
    ("8-appservice-no-process", _set(("shared", "notify_appservices_from_worker"), "as"), "homeserver.yaml",
     "`notify_appservices_from_worker` names 'as'"),
    ("8-media-no-process", _set(("shared", "media_instance_running_background_jobs"), "m"), "homeserver.yaml",
     "`media_instance_running_background_jobs` names 'm'"),
    ("8-send-federation-contradicts", _set(("shared", "send_federation"), True), "homeserver.yaml",
     "`send_federation: true` keeps federation_sender on main"),
    ("8-legacy-pusher-app", lambda s, w: (s.pop("pusher_instances"), w["pusher1"].update(worker_app="synapse.app.pusher")),
     "pusher1.yaml", "needs `start_pushers: false`"),
    ("8-outbound-without-secret", lambda s, w: (s.pop("worker_replication_secret"),
                                                s.update(outbound_federation_restricted_to=["persister1"])),
     "homeserver.yaml", "`outbound_federation_restricted_to` needs `worker_replication_secret`"),
    ("9-daemonize", _set(("shared", "daemonize"), True), "homeserver.yaml", "`daemonize: true` makes Synapse fork"),
    ("9-worker-daemonize", _set(("generic1", "worker_daemonize"), True), "generic1.yaml", "`worker_daemonize: true`"),
    ("10-log-config-missing", _set(("generic1", "worker_log_config"), "/nonexistent/log.yaml"), "generic1.yaml",
     "`worker_log_config` names '/nonexistent/log.yaml', which does not exist"),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_rule(tmp_path, dialect, case):
    _, mutate, file_part, fragment = case
    shared, workers = DIALECTS[dialect]()
    mutate(shared, workers)
    result = check(tmp_path, shared, workers)
    matching = [f for f in result.errors if fragment in f.message]
    assert matching, f"no error containing {fragment!r} in {[f.format() for f in result.errors]}"
    assert file_part in matching[0].file or file_part in matching[0].message
    assert matching[0].format().count(": error: ") == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_main_endpoint_missing_is_one_error_at_the_shared_config(tmp_path, dialect):
    shared, workers = DIALECTS[dialect]()
    shared["instance_map"].pop("main", None)
    for doc in workers.values():
        doc.pop("worker_replication_host", None), doc.pop("worker_replication_http_port", None)
    result = check(tmp_path, shared, workers)
    errors = [f for f in result.errors if "no replication endpoint for the main process" in f.message]
    assert len(errors) == 1 and errors[0].file.endswith("homeserver.yaml")
    assert "add `instance_map: {main: {host: 127.0.0.1, port: 9093}}` to the shared config" in errors[0].message


def test_instance_map_main_named_master(tmp_path):
    shared, workers = modern_deployment()
    shared["instance_map"]["master"] = shared["instance_map"].pop("main")
    result = check(tmp_path, shared, workers)
    assert [f.message.split(";")[0] for f in result.errors] == [
        "instance_map names the main process `master`, but Synapse looks for `main` "
        "(\"Please include 'main' in the instance_map\")"]
    assert "rename `master:` to `main:`" in result.errors[0].message


def test_worker_names_without_worker_dir_is_one_hint(tmp_path):
    shared, _ = modern_deployment()
    config, _ = write_deployment(str(tmp_path), shared, {})
    result = check_deployment([config], None, "python-not-used", read_version=False)
    assert [f.message for f in result.errors if "-a" in f.message] == [
        "`stream_writers.events` names the worker 'persister1', but no worker directory was given: "
        "did you forget -a DIR? (without -a only the main process runs)"]
    assert not any("is no process of this deployment" in f.message for f in result.errors)


def test_yml_worker_file_is_a_warning(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    os.rename(os.path.join(workers_dir, "pusher1.yaml"), os.path.join(workers_dir, "pusher1.yml"))
    result = check_deployment([config], workers_dir, "python-not-used", read_version=False)
    warnings = [f for f in result.warnings if f.file.endswith("pusher1.yml")]
    assert warnings and "rename it to pusher1.yaml" in warnings[0].message


def test_main_endpoint_not_a_replication_listener(tmp_path):
    shared, workers = modern_deployment()
    shared["instance_map"]["main"]["port"] = 8008  # the client listener
    result = check(tmp_path, shared, workers)
    assert any("instance_map.main: 127.0.0.1:8008 matches no replication listener on main" in f.message
               for f in result.errors)


def test_legacy_endpoint_not_a_replication_listener(tmp_path):
    shared, workers = legacy_deployment()
    workers["generic1"]["worker_replication_http_port"] = 9999
    result = check(tmp_path, shared, workers)
    assert any("main's replication endpoint 127.0.0.1:9999 matches no replication listener" in f.message
               for f in result.errors)


def test_both_dialects_disagreeing(tmp_path):
    shared, workers = modern_deployment()
    workers["generic1"].update(worker_replication_host="127.0.0.1", worker_replication_http_port=9094)
    result = check(tmp_path, shared, workers)
    errors = [f for f in result.errors if "instance_map.main says 127.0.0.1:9093" in f.message]
    assert errors and errors[0].file.endswith("generic1.yaml")


def test_both_dialects_agreeing_is_fine(tmp_path):
    shared, workers = modern_deployment()
    workers["generic1"].update(worker_replication_host="127.0.0.1", worker_replication_http_port=9093)
    assert check(tmp_path, shared, workers).errors == []


WARNING_CASES = [
    ("deprecated-app", lambda s, w: (s.pop("pusher_instances"), s.update(start_pushers=False),
                                     w["pusher1"].update(worker_app="synapse.app.pusher")),
     "worker_app synapse.app.pusher is deprecated; use synapse.app.generic_worker listed in `pusher_instances`"),
    ("frontend-proxy", _set(("generic1", "worker_app"), "synapse.app.frontend_proxy"), "frontend_proxy is deprecated"),
    ("exposed-replication", lambda s, w: (s.pop("worker_replication_secret"),
                                          s["listeners"][1].update(bind_addresses=["0.0.0.0"])),
     "replication listener on 0.0.0.0 without `worker_replication_secret`"),
    ("pid-file", _set(("shared", "pid_file"), "/run/hs.pid"), "`pid_file` is unused under synsup"),
    ("worker-pid-file", _set(("generic1", "worker_pid_file"), "/run/w.pid"), "`worker_pid_file` is unused"),
    ("main-http-uri", _set(("generic1", "worker_main_http_uri"), "http://127.0.0.1:8008"),
     "`worker_main_http_uri` is unused under synsup: Synapse ignores it"),
]


@pytest.mark.parametrize("case", WARNING_CASES, ids=[c[0] for c in WARNING_CASES])
def test_warning_rule(tmp_path, case):
    _, mutate, fragment = case
    shared, workers = modern_deployment()
    mutate(shared, workers)
    result = check(tmp_path, shared, workers)
    assert result.errors == []
    assert any(fragment in f.message for f in result.warnings), [f.format() for f in result.warnings]


def test_line_numbers_point_at_the_key(tmp_path):
    (tmp_path / "workers").mkdir()
    (tmp_path / "homeserver.yaml").write_text(
        "server_name: x\n"
        "listeners:\n"
        "  - port: 9093\n"
        "    type: http\n"
        "    bind_addresses: ['127.0.0.1']\n"
        "    resources: [{names: [replication]}]\n"
        "database: {name: psycopg2}\n"
        "redis: {enabled: true}\n"
        "instance_map:\n"
        "  main: {host: 127.0.0.1, port: 9093}\n"
        "stream_writers:\n"
        "  typing: w1\n"
        "  eventz: w1\n")
    (tmp_path / "workers" / "w1.yaml").write_text(
        "worker_app: synapse.app.generic_worker\n"
        "worker_name: w1\n"
        "worker_daemonize: true\n")
    result = check_deployment([str(tmp_path / "homeserver.yaml")], str(tmp_path / "workers"), "x", read_version=False)
    lines = {(os.path.basename(f.file), f.line, f.message.split(";")[0]) for f in result.errors}
    assert ("homeserver.yaml", 13, "stream_writers: unknown stream 'eventz'") in lines
    assert ("w1.yaml", 3, "w1: `worker_daemonize: true` makes Synapse fork away from its supervisor") in lines
    assert any(f.line == 12 and "missing from `instance_map`" in f.message for f in result.errors)


@pytest.mark.parametrize("version,expect_error", [("1.90.0", True), ("1.87.0", False)])
def test_version_rejects_legacy_endpoint_keys(tmp_path, version, expect_error):
    config, workers_dir = write_deployment(str(tmp_path), *legacy_deployment())
    deployment = load_deployment([config], workers_dir, "x").deployment
    findings = run_rules(deployment, version)
    rejected = [f for f in findings if f"Synapse {version} rejects `worker_replication_host`" in f.message]
    assert bool(rejected) is expect_error
    if expect_error:
        assert "put main into instance_map" in rejected[0].message


def test_old_version_does_not_read_instance_map_main(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    deployment = load_deployment([config], workers_dir, "x").deployment
    assert any("does not read instance_map.main" in f.message for f in run_rules(deployment, "1.70.0"))


def _python_without_synapse(tmp_path) -> str:
    wrapper = tmp_path / "python-no-site"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')  # -S: no site-packages, no Synapse
    wrapper.chmod(0o755)
    return str(wrapper)


def test_unimportable_synapse_is_one_note(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    result = check_deployment([config], workers_dir, _python_without_synapse(tmp_path))
    assert result.errors == []
    assert len(result.notes) == 1 and "Synapse's own config checks and version checks skipped" in result.notes[0]


def test_an_unsafe_worker_name_is_reported_on_its_worker_name_line(tmp_path):
    shared, workers = modern_deployment()
    workers["generic1"]["worker_name"] = "../../escape/victim"
    result = check(tmp_path, shared, workers)
    [finding] = [f for f in result.errors if "cannot be a synsup unit name" in f.message]
    with open(finding.file) as f:
        assert f.read().splitlines()[finding.line - 1].startswith("worker_name:")


@pytest.mark.parametrize("name", ["generic1", "a", "Persister_2.eu-west", "x" * 64])
def test_safe_worker_names_pass(tmp_path, name):
    shared, workers = modern_deployment()
    workers["generic1"]["worker_name"] = name
    assert not [f for f in check(tmp_path, shared, workers).errors if "unit name" in f.message]


@pytest.mark.parametrize("python,why", [("/nonexistent/python3", "cannot run"), ("/bin/false", "is not a working Python")])
def test_python_that_cannot_run_is_an_error(tmp_path, python, why):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    result = check_deployment([config], workers_dir, python)
    assert [f.file for f in result.errors] == [python]
    assert why in result.errors[0].message and "pass the interpreter of Synapse's virtualenv" in result.errors[0].message


@pytest.fixture
def fake_synapse(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", FAKE_SYNAPSE)


def test_synapse_loader_accepts_a_valid_deployment(tmp_path, fake_synapse):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    result = check_deployment([config], workers_dir, sys.executable)
    assert result.errors == [] and result.notes == []
    assert result.synapse_version == "1.163.0"


@pytest.mark.parametrize("where", ["shared", "generic1"])
def test_value_synapse_rejects_is_one_error_at_its_line(tmp_path, fake_synapse, where):
    shared, workers = modern_deployment()
    (shared if where == "shared" else workers["generic1"])["event_cache_size"] = "lots"
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    result = check_deployment([config], workers_dir, sys.executable)
    assert len(result.errors) == 1, [f.format() for f in result.errors]
    finding = result.errors[0]
    assert "Synapse rejects this config: ValueError: invalid literal for int() with base 10: 'lots'" in finding.message
    expected_file = config if where == "shared" else os.path.join(workers_dir, "generic1.yaml")
    with open(expected_file) as f:
        assert "event_cache_size" in f.read().splitlines()[finding.line - 1]
    assert finding.message.startswith("every process:" if where == "shared" else "generic1:")


def test_synapse_config_error_names_its_key(tmp_path, fake_synapse):
    shared, workers = modern_deployment()
    shared["caches"] = "big"
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    result = check_deployment([config], workers_dir, sys.executable)
    assert len(result.errors) == 1
    assert "Error in configuration at 'caches': caches must be a mapping" in result.errors[0].message
    with open(config) as f:
        assert f.read().splitlines()[result.errors[0].line - 1].startswith("caches:")


CODE_OF_WARNING_CASE = {"deprecated-app": "deprecated-app", "frontend-proxy": "deprecated-app",
                        "exposed-replication": "exposed-replication", "pid-file": "unused-key",
                        "worker-pid-file": "unused-key", "main-http-uri": "unused-key"}


@pytest.mark.parametrize("case", WARNING_CASES, ids=[c[0] for c in WARNING_CASES])
def test_every_warning_shows_its_code(tmp_path, case):
    """Issue 22: warnings get a stable code, shown after the message and in --json."""
    name, mutate, fragment = case
    shared, workers = modern_deployment()
    mutate(shared, workers)
    [finding] = [f for f in check(tmp_path, shared, workers).warnings if fragment in f.message]
    assert finding.code == CODE_OF_WARNING_CASE[name]
    assert ": warning: " in finding.format() and finding.format().endswith(f" [{finding.code}]")
    assert finding.as_json()["code"] == finding.code


def test_ignored_warning_codes_are_silenced(tmp_path):
    shared, workers = modern_deployment()
    shared["pid_file"] = "/run/hs.pid"
    workers["pusher1"]["worker_app"] = "synapse.app.frontend_proxy"
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    result = check_deployment([config], workers_dir, "x", read_version=False, ignore=("unused-key",))
    assert [f.code for f in result.warnings] == ["deprecated-app"]


def test_daemonize_in_the_shared_config_is_one_error(tmp_path):
    """Issue 22: `daemonize: true` in the shared config was reported once per process (6 times)."""
    shared, workers = modern_deployment()
    shared["daemonize"] = True
    errors = [f for f in check(tmp_path, shared, workers).errors if "`daemonize: true`" in f.message]
    assert len(errors) == 1 and errors[0].file.endswith("homeserver.yaml"), [f.format() for f in errors]


def test_conf_d_beside_the_config_not_given_is_a_hint(tmp_path):
    """Issue 22: Debian's conf.d beside homeserver.yaml, left out of -c, was silently not read."""
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "server_name.yaml").write_text("server_name: example.org\n")
    result = check_deployment([config], workers_dir, "x", read_version=False)
    [hint] = [f for f in result.warnings if f.code == "conf-d"]
    assert hint.file == str(tmp_path / "conf.d") and f"-c {tmp_path / 'conf.d'}" in hint.message
    given = check_deployment([config, str(tmp_path / "conf.d")], workers_dir, "x", read_version=False)
    assert not [f for f in given.warnings if f.code == "conf-d"]


def _line_of(path, key):
    with open(path) as f:
        return next(n for n, line in enumerate(f, 1) if line.startswith(f"{key}:"))


# issue 20: a shared-only key that a worker file overrides with another value
DIFFERING_CASES = [
    ("worker_replication_secret", "other", "Invalid Authorization header"),
    ("instance_map", {"main": {"host": "127.0.0.1", "port": 9093}}, "replication requests"),
    ("stream_writers", {"events": ["persister2", "persister1"]}, "the same writers in another order"),
    ("pusher_instances", ["generic1"], "which process does"),
    ("run_background_tasks_on", "generic1", "which process does"),
    ("redis", {"enabled": True, "host": "127.0.0.1", "port": 6380}, "Redis"),
    ("database", {"name": "psycopg2", "args": {"database": "other"}}, "database"),
]


@pytest.mark.parametrize("key, value, why", DIFFERING_CASES, ids=[c[0] for c in DIFFERING_CASES])
def test_shared_key_differing_in_a_worker_file_names_both_places(tmp_path, key, value, why):
    shared, workers = modern_deployment()
    workers["generic1"][key] = value
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    result = check_deployment([config], workers_dir, "x", read_version=False)
    worker_file = os.path.join(workers_dir, "generic1.yaml")
    [finding] = [f for f in result.errors if f"`{key}`" in f.message and "every process must agree" in f.message]
    assert (finding.file, finding.line) == (worker_file, _line_of(worker_file, key))
    if key in shared:
        assert f"{config}:{_line_of(config, key)}" in finding.message
    assert why in finding.message


@pytest.mark.parametrize("key, value", [
    ("worker_replication_secret", "secret"),  # the same value again
    ("pusher_instances", "pusher1"),  # the same list, written as one name
    ("database", {"name": "psycopg2", "args": {"database": "synapse", "cp_max": 5}}),  # its own pool size
])
def test_shared_key_repeated_with_the_same_meaning_is_fine(tmp_path, key, value):
    shared, workers = modern_deployment()
    workers["generic1"][key] = value
    assert not [f for f in check(tmp_path, shared, workers).errors if "every process must agree" in f.message]


def test_no_replication_secret_over_the_network_is_a_warning(tmp_path):
    shared, workers = modern_deployment()
    del shared["worker_replication_secret"]
    shared["instance_map"]["persister1"]["host"] = "10.0.0.5"
    workers["persister1"]["worker_listeners"][0]["bind_addresses"] = ["10.0.0.5"]
    result = check(tmp_path, shared, workers)
    [warning] = [f for f in result.warnings if f.code == "no-replication-secret"]
    assert "10.0.0.5" in warning.message and "worker_replication_secret" in warning.message
    assert not [f for f in result.warnings if f.code == "exposed-replication"]  # one finding, not two


@pytest.mark.parametrize("host, over_network", [
    ("127.0.1.1", False),  # Debian's /etc/hosts puts the host name there
    ("127.5.6.7", False), ("::1", False), ("::ffff:127.0.0.1", False), ("localhost", False),
    ("10.1.2.3", True), ("::ffff:10.1.2.3", True), ("synapse.example.org", True),
])
def test_no_replication_secret_warning_regression_loopback_is_all_of_127_8(tmp_path, host, over_network):
    """Issue 20 audit: loopback was a fixed set (localhost, 127.0.0.1, ::1), so an instance_map
    host of 127.0.1.1 was taken for the network."""
    shared, workers = modern_deployment()
    del shared["worker_replication_secret"]
    shared["instance_map"]["persister1"]["host"] = host
    workers["persister1"]["worker_listeners"][0]["bind_addresses"] = [host]
    result = check(tmp_path, shared, workers)
    warnings = [f for f in result.warnings if f.code == "no-replication-secret"]
    assert bool(warnings) == over_network, [f.message for f in result.warnings]
    if over_network:
        assert host in warnings[0].message
    else:
        assert not [f for f in result.warnings if f.code == "exposed-replication"]


@pytest.mark.parametrize("secret, reason", [("a secret", "space"), ("sécret", "ASCII")])
def test_replication_secret_synapse_cannot_send(tmp_path, secret, reason):
    """Issue 22: Synapse loads it, then every replication call fails (`Bearer SECRET`, ASCII)."""
    shared, workers = modern_deployment()
    shared["worker_replication_secret"] = secret
    [finding] = [f for f in check(tmp_path, shared, workers).errors if "worker_replication_secret" in f.message]
    assert reason in finding.message and "Bearer" in finding.message


@pytest.mark.parametrize("media_worker", [
    lambda s, w: w["generic1"].update(worker_listeners=[listener(8081, "client", "media")]),
    lambda s, w: s.update(media_instance_running_background_jobs="generic1"),
    lambda s, w: w["generic1"].update(worker_app="synapse.app.media_repository"),  # the v1.66 dialect
], ids=["media-listener", "background-jobs", "v1.66-app"])
def test_media_worker_while_main_serves_media_is_a_warning(tmp_path, media_worker):
    """Issue 22: Synapse's workers doc asks for `enable_media_repo: false` on main then."""
    shared, workers = modern_deployment()
    media_worker(shared, workers)
    [finding] = [f for f in check(tmp_path, shared, workers).warnings if f.code == "media-on-main"]
    assert "generic1" in finding.message and "`enable_media_repo: false`" in finding.message
    shared["enable_media_repo"] = False
    workers["generic1"]["enable_media_repo"] = True
    assert not [f for f in check(tmp_path, shared, workers).warnings if f.code == "media-on-main"]


# issue 22: the stream writers as Synapse 1.163 has them
STREAM_CASES = [
    ("main-in-stream-writers", _set(("shared", "stream_writers", "typing"), "main"),
     "stream_writers.typing: the main process is `master` here, not `main`"),
    ("quarantined-media-without-main", _set(("shared", "stream_writers", "quarantined_media_changes"), ["persister1"]),
     "stream_writers.quarantined_media_changes must list the main process (`master`)"),
    ("device-lists-writer-not-in-instance-map", lambda s, w: (s["stream_writers"].update(device_lists=["generic1"]),
                                                               w["generic1"]["worker_listeners"].append(
                                                                   listener(9105, "replication"))),
     "stream_writers.device_lists: writer 'generic1' is missing from `instance_map`"),
    ("thread-subscriptions-writer-not-in-instance-map",
     lambda s, w: (s["stream_writers"].update(thread_subscriptions="generic1"),
                   w["generic1"]["worker_listeners"].append(listener(9105, "replication"))),
     "stream_writers.thread_subscriptions: writer 'generic1' is missing from `instance_map`"),
]


@pytest.mark.parametrize("case", STREAM_CASES, ids=[c[0] for c in STREAM_CASES])
def test_stream_writers_of_synapse_1_163(tmp_path, case):
    _, mutate, fragment = case
    shared, workers = modern_deployment()
    mutate(shared, workers)
    result = check(tmp_path, shared, workers)
    assert [f for f in result.errors if fragment in f.message], [f.format() for f in result.errors]


def test_multi_writer_device_lists_with_main_first_is_fine(tmp_path):
    shared, workers = modern_deployment()
    shared["stream_writers"].update(device_lists=["master", "persister1", "persister2"],
                                    quarantined_media_changes=["master", "persister1"])
    assert check(tmp_path, shared, workers).errors == []


@pytest.mark.parametrize("stream, version, since", [
    ("quarantined_media_changes", "1.151.0", "1.152"), ("device_lists", "1.134.1", "1.135"),
    ("thread_subscriptions", "1.120.0", "1.135"), ("push_rules", "1.104.0", "1.105"),
])
def test_stream_key_the_synapse_in_use_does_not_know(tmp_path, stream, version, since):
    shared, workers = modern_deployment()
    shared["stream_writers"][stream] = "master"
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    findings = run_rules(load_deployment([config], workers_dir, "x").deployment, version)
    [finding] = [f for f in findings if f"Synapse {version} does not know" in f.message]
    assert f"stream_writers.{stream}" in finding.message and f"added in {since}" in finding.message
    assert not [f for f in run_rules(load_deployment([config], workers_dir, "x").deployment, "1.163.0")
                if "does not know" in f.message]


def _synapse_check(tmp_path, shared, workers, main_file=None):
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    if main_file is not None:
        with open(os.path.join(workers_dir, "main.yaml"), "w") as f:
            f.write(main_file)
    return config, workers_dir, check_deployment([config], workers_dir, sys.executable)


def _text_at(finding) -> str:
    with open(finding.file) as f:
        return f.read().splitlines()[finding.line - 1]


@pytest.mark.parametrize("where", ["shared", "generic1"])
def test_synapse_listener_error_in_words_at_the_listener(tmp_path, fake_synapse, where):
    """Issue 22: attrs' tuple repr cut mid-word, at line 1 of a worker file."""
    shared, workers = modern_deployment()
    listeners = shared["listeners"] if where == "shared" else workers["generic1"]["worker_listeners"]
    listeners[0]["type"] = "htttp"
    _, _, result = _synapse_check(tmp_path, shared, workers)
    [finding] = result.errors
    assert "'type' must be one of http, manhole, metrics (got 'htttp')" in finding.message
    assert "Attribute(" not in finding.message and "ValueError" not in finding.message
    assert _text_at(finding).strip(" -").startswith("type: htttp")
    assert finding.message.startswith("every process:" if where == "shared" else "generic1:")


@pytest.mark.parametrize("writers, fragment", [
    ({"eventz": ["persister1"]}, "unknown stream 'eventz'"),
    ({"typing": "main"}, "the main process is `master` here, not `main`"),
], ids=["typo", "main"])
def test_stream_writers_mistake_is_one_finding(tmp_path, fake_synapse, writers, fragment):
    """Issue 22: reported twice, once by Synapse's loader blamed on workers/main.yaml:1."""
    shared, workers = modern_deployment()
    shared["stream_writers"].update(writers)
    config, _, result = _synapse_check(tmp_path, shared, workers, main_file="worker_app: synapse.app.homeserver\n")
    assert len(result.errors) == 1, [f.format() for f in result.errors]
    assert fragment in result.errors[0].message and result.errors[0].file == config


def test_synapse_error_for_a_conf_d_key_points_into_conf_d(tmp_path, fake_synapse):
    shared, workers = modern_deployment()
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "writers.yaml").write_text("server_name: example.org\nstream_writers:\n"
                                                      "  events: [persister1, persister3]\n")
    result = check_deployment([config, str(tmp_path / "conf.d")], workers_dir, sys.executable)
    synapse = [f for f in result.errors if "Synapse rejects" in f.message or "persister3" in f.message]
    assert len(synapse) == 1 and synapse[0].file == str(tmp_path / "conf.d" / "writers.yaml"), \
        [f.format() for f in result.errors]


def test_missing_dependency_names_the_extra_to_install(tmp_path, fake_synapse):
    shared, workers = modern_deployment()
    shared["url_preview_enabled"] = True
    config, _, result = _synapse_check(tmp_path, shared, workers)
    [finding] = result.errors
    assert 'pip install "matrix-synapse[url-preview]"' in finding.message and "beautifulsoup4" in finding.message
    assert finding.file == config and _text_at(finding).startswith("url_preview_enabled:")


@pytest.mark.parametrize("option", ["pusher_instances", "run_background_tasks_on", "federation_sender_instances"])
def test_main_in_a_duty_list_is_master(tmp_path, option):
    """Synapse compares duty lists with its instance name, `master` for main: `main` matches no process."""
    shared, workers = modern_deployment()
    shared[option] = ["main"]
    [finding] = [f for f in check(tmp_path, shared, workers).errors if f"`{option}` names `main`" in f.message]
    assert "write `master`" in finding.message


def test_a_shared_line_every_worker_inherits_is_one_finding(tmp_path):
    """Issue 22 (one finding for one line): per-process rules at a shared key said it once per worker."""
    shared, workers = modern_deployment()
    shared["worker_replication_port"] = 9092
    errors = [f for f in check(tmp_path, shared, workers).errors if "`worker_replication_port`" in f.message]
    assert len(errors) == 1 and errors[0].file.endswith("homeserver.yaml"), [f.format() for f in errors]
    assert errors[0].message.startswith("generic1, persister1, persister2, pusher1, sender1: ")
