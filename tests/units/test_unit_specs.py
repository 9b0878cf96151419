"""From the deployment model to unit specs: argv, environment, probes, steps, groups."""

from __future__ import annotations

import json
import os

import pytest
from helpers import legacy_deployment, modern_deployment, write_deployment

from synsup.supervisor.spec import HttpProbe, RedisProbe, TcpProbe, steps_of
from synsup.units.loader import load_deployment
from synsup.units.unit_specs import unit_specs


def specs_for(tmp_path, shared, workers, **kw):
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    deployment = load_deployment([config], workers_dir, "/opt/venv/bin/python").deployment
    return {s.name: s for s in unit_specs(deployment, **kw)}, config, workers_dir


def test_argv_and_dependencies(tmp_path):
    specs, config, workers_dir = specs_for(tmp_path, *modern_deployment())
    assert specs["main"].argv == ("/opt/venv/bin/python", "-m", "synapse.app.homeserver", "-c", config)
    assert specs["generic1"].argv == ("/opt/venv/bin/python", "-m", "synapse.app.generic_worker", "-c", config,
                                      "-c", os.path.join(workers_dir, "generic1.yaml"))
    assert specs["main"].dependencies == ("redis", "postgres")
    assert specs["persister1"].dependencies == ("main",)
    assert set(specs["generic1"].dependencies) == {"main", "persister1", "persister2"}
    assert steps_of(list(specs.values())) == [["redis", "postgres"], ["main"], ["persister1", "persister2"],
                                              ["generic1", "pusher1", "sender1"]]
    assert specs["main"].start_timeout == 300 and specs["generic1"].start_timeout == 120


def test_groups(tmp_path):
    specs, _, _ = specs_for(tmp_path, *modern_deployment())
    assert specs["persister1"].group == "event_persisters"
    assert specs["sender1"].group == "federation_senders"
    assert specs["pusher1"].group == "pushers"
    assert specs["generic1"].group is None and specs["main"].group is None


def test_legacy_apps_imply_their_groups(tmp_path):
    shared, workers = legacy_deployment()
    del shared["federation_sender_instances"], shared["pusher_instances"]
    shared.update(send_federation=False, start_pushers=False)
    workers["sender1"]["worker_app"] = "synapse.app.federation_sender"
    workers["pusher1"]["worker_app"] = "synapse.app.pusher"
    specs, _, _ = specs_for(tmp_path, shared, workers)
    assert specs["sender1"].group == "federation_senders" and specs["pusher1"].group == "pushers"
    assert specs["sender1"].argv[2] == "synapse.app.generic_worker"


def test_probes_cover_every_http_listener(tmp_path):
    shared, workers = modern_deployment()
    shared["listeners"].append({"type": "metrics", "port": 9000})
    specs, _, _ = specs_for(tmp_path, shared, workers)
    assert specs["main"].probes == (HttpProbe(host="127.0.0.1", port=8008), HttpProbe(host="127.0.0.1", port=9093))
    assert specs["persister1"].probes == (HttpProbe(host="127.0.0.1", port=9101),)
    assert specs["pusher1"].probes == ()
    assert specs["redis"].probes == (RedisProbe(host="127.0.0.1", port=6379),)


def test_wildcard_and_unix_listeners_are_probed_locally(tmp_path):
    shared, workers = modern_deployment()
    workers["generic1"]["worker_listeners"] = [
        {"type": "http", "port": 8081, "bind_addresses": ["::"], "resources": [{"names": ["client"]}]},
        {"type": "http", "path": "/run/synapse/g1.sock", "resources": [{"names": ["client"]}]},
    ]
    specs, _, _ = specs_for(tmp_path, shared, workers)
    assert specs["generic1"].probes == (HttpProbe(host="::1", port=8081), HttpProbe(path="/run/synapse/g1.sock"))


def test_cache_factors_become_environment(tmp_path):
    shared, workers = modern_deployment()
    shared.update(synctl_cache_factor=2.0, synctl_cache_factors={"stateGroupCache": 3})
    workers["generic1"].update(synctl_cache_factor=0.5, synctl_cache_factors={"getEvent": 4})
    specs, _, _ = specs_for(tmp_path, shared, workers)
    assert dict(specs["main"].env) == {"SYNAPSE_CACHE_FACTOR": "2.0", "SYNAPSE_CACHE_FACTOR_STATEGROUPCACHE": "3"}
    assert dict(specs["generic1"].env) == {"SYNAPSE_CACHE_FACTOR": "0.5", "SYNAPSE_CACHE_FACTOR_STATEGROUPCACHE": "3",
                                           "SYNAPSE_CACHE_FACTOR_GETEVENT": "4"}


def test_what_is_synapse_in_a_spec_comes_from_the_source(tmp_path):
    """Issue 17: the engine and daemon special-case nothing; the specs say what is Synapse's: the
    SYNAPSE_ variables kept, main's long start, the starts that compute for seconds, each step's
    name for `stop`, the code's name."""
    specs, _, _ = specs_for(tmp_path, *modern_deployment())
    synapse = [s for s in specs.values() if s.code_name]
    assert {s.keep_env for s in synapse} == {("SYNAPSE_",)} and specs["redis"].keep_env == ()
    assert [s.name for s in specs.values() if s.slow_start] == ["main"]
    assert {s.name for s in specs.values() if s.cpu_bound_start} == {s.name for s in synapse}  # not Redis
    assert {s.code_name for s in synapse} == {"Synapse"}
    assert [specs[n].step_name for n in ("redis", "main", "persister1", "generic1")] == \
        ["Redis", "main", "stream writers", "workers"]


def test_redis_runs_with_password_on_stdin_and_no_persistence(tmp_path):
    shared, workers = modern_deployment()
    shared["redis"]["password"] = "pw"
    specs, _, _ = specs_for(tmp_path, shared, workers)
    redis = specs["redis"]
    assert redis.argv == ("redis-server", "-") and "pw" not in " ".join(redis.argv)
    config = redis.stdin.decode()
    assert 'requirepass "pw"' in config and 'save ""' in config and "appendonly no" in config
    assert "bind 127.0.0.1" in config and "port 6379" in config


def test_external_redis_is_only_probed(tmp_path):
    specs, _, _ = specs_for(tmp_path, *modern_deployment(), external_redis=True)
    assert specs["redis"].argv is None and specs["redis"].probes


def test_main_alone_without_worker_dir(tmp_path):
    shared, _ = modern_deployment()
    config, _ = write_deployment(str(tmp_path), shared, {})
    deployment = load_deployment([config], None, "python").deployment
    specs = unit_specs(deployment)
    assert [s.name for s in specs] == ["redis", "postgres", "main"]


def test_listen_addresses_are_every_listener_and_redis(tmp_path):
    shared, workers = modern_deployment()
    shared["listeners"].append({"type": "metrics", "port": 9000})
    workers["generic1"]["worker_listeners"].append({"type": "http", "path": "/run/synapse/g1.sock",
                                                    "resources": [{"names": ["client"]}]})
    specs, _, _ = specs_for(tmp_path, shared, workers)
    assert specs["main"].listens == ("127.0.0.1:8008", "127.0.0.1:9093", "[::]:9000", "0.0.0.0:9000")
    assert specs["generic1"].listens == ("127.0.0.1:8081", "unix:/run/synapse/g1.sock")
    assert specs["pusher1"].listens == ()
    assert specs["redis"].listens == ("127.0.0.1:6379",)
    external, _, _ = specs_for(tmp_path, shared, workers, external_redis=True)
    assert external["redis"].listens == ()


@pytest.mark.parametrize("version,expected", [("1.163.2", True), ("1.3.0", True), ("1.2.1", False), (None, False)])
def test_synapse_processes_wait_for_ready_when_their_version_sends_it(tmp_path, version, expected):
    specs, _, _ = specs_for(tmp_path, *modern_deployment(), synapse_version=version)
    assert {n: s.ready_notify for n, s in specs.items() if s.kind in ("main", "worker")} == dict.fromkeys(
        ["main", "persister1", "persister2", "generic1", "pusher1", "sender1"], expected)
    assert specs["redis"].ready_notify is False


@pytest.mark.parametrize("args,probe", [
    ({"host": "127.0.0.1"}, TcpProbe(host="127.0.0.1", port=5432)),
    ({"host": "localhost", "port": 5433}, TcpProbe(host="127.0.0.1", port=5433)),
    ({"host": "db.internal", "port": "6432"}, TcpProbe(host="db.internal", port=6432)),
    ({"host": "/run/pg", "port": 5433}, TcpProbe(path="/run/pg/.s.PGSQL.5433")),
    ({}, TcpProbe(path="/var/run/postgresql/.s.PGSQL.5432")),
])
def test_postgres_is_an_external_unit_main_depends_on(tmp_path, args, probe):
    shared, workers = modern_deployment()
    shared["database"] = {"name": "psycopg2", "args": {"database": "synapse", **args}}
    specs, _, _ = specs_for(tmp_path, shared, workers)
    postgres = specs["postgres"]
    assert postgres.argv is None and postgres.kind == "postgres" and postgres.probes == (probe,)
    assert "postgres" in specs["main"].dependencies and postgres.step < specs["main"].step


def test_sqlite_has_no_postgres_unit(tmp_path):
    shared, _ = modern_deployment()
    shared["database"] = {"name": "sqlite3", "args": {"database": "h.db"}}
    config, _ = write_deployment(str(tmp_path), shared, {})
    specs = unit_specs(load_deployment([config], None, "python").deployment)
    assert [s.name for s in specs] == ["redis", "main"] and specs[1].dependencies == ("redis",)


def test_writers_and_workers_may_start_beside_main_when_the_schema_check_passes(tmp_path):
    specs, _, _ = specs_for(tmp_path, *modern_deployment())
    assert specs["main"].start_beside is None  # main needs its Redis and PostgreSQL ready, always
    assert specs["persister1"].start_beside.units == ("main",)
    assert set(specs["generic1"].start_beside.units) == {"main", "persister1", "persister2"}
    check = specs["generic1"].start_beside
    assert check.check[0] == "/opt/venv/bin/python" and check.check[1].endswith("schema_current.py")
    assert json.loads(check.input)["database"]["name"] == "psycopg2"  # on stdin: never on a command line
    assert "input" not in repr(check)  # the database password stays out of logs and plans


def test_without_postgresql_main_stays_first(tmp_path):
    shared, workers = modern_deployment()
    shared["database"] = {"name": "sqlite3", "args": {"database": str(tmp_path / "h.db")}}
    specs, _, _ = specs_for(tmp_path, shared, workers)
    assert all(s.start_beside is None for s in specs.values())
