"""`synsup check` end to end: bad input of every kind gives one line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import FAKE_SYNAPSE, HERE, modern_deployment, write_deployment


def synsup(*args, cwd=None, env_extra=None):
    env = {**os.environ, "PYTHONPATH": FAKE_SYNAPSE, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "synsup", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)


def assert_one_line_error(done, path_part):
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [l for l in done.stderr.splitlines() if ": error: " in l]
    assert errors, done.stderr
    assert path_part in errors[0]


BAD_FILES = {
    "binary-garbage": b"\x00\xff\xfe\x80garbage\x01",
    "empty": b"",
    "yaml-list": b"- a\n- b\n",
    "bad-syntax": b"server_name: x\nlisteners: [\n",
    "scalar": b"just a string\n",
    "unhashable-key": b"? [a, b]\n: 1\n",
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_shared_file(tmp_path, name):
    path = tmp_path / "homeserver.yaml"
    path.write_bytes(BAD_FILES[name])
    assert_one_line_error(synsup("check", "-c", str(path)), str(path))


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_worker_file(tmp_path, name):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    with open(os.path.join(workers_dir, "broken.yaml"), "wb") as f:
        f.write(BAD_FILES[name])
    assert_one_line_error(synsup("check", "-c", config, "-a", workers_dir), "broken.yaml")


def test_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: x\nlisteners:\n  - port: 1\n   type: http\n")
    done = synsup("check", "-c", str(path))
    assert_one_line_error(done, f"{path}:4:")


def test_missing_config_file(tmp_path):
    assert_one_line_error(synsup("check", "-c", str(tmp_path / "nope.yaml")), "nope.yaml: error: no such file")


def test_default_config_is_homeserver_yaml_in_cwd(tmp_path):
    assert_one_line_error(synsup("check", cwd=str(tmp_path)), "homeserver.yaml: error: no such file")


def test_directory_where_a_worker_file_belongs(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    os.mkdir(os.path.join(workers_dir, "odd.yaml"))
    assert_one_line_error(synsup("check", "-c", config, "-a", workers_dir), "odd.yaml: error: is a directory")


def test_missing_and_empty_worker_dir(tmp_path):
    config, _ = write_deployment(str(tmp_path), *modern_deployment())
    assert_one_line_error(synsup("check", "-c", config, "-a", str(tmp_path / "none")), "none: error: no such directory")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(synsup("check", "-c", config, "-a", str(tmp_path / "empty")), "holds no *.yaml worker file")


def test_worker_dir_with_only_the_main_file(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), modern_deployment()[0], {})
    (tmp_path / "workers" / "main.yaml").write_text("worker_app: synapse.app.homeserver\n")
    assert_one_line_error(synsup("check", "-c", config, "-a", workers_dir), "holds only the main process")


@pytest.mark.skipif(os.getuid() == 0, reason="root reads every file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: x\n")
    path.chmod(0)
    assert_one_line_error(synsup("check", "-c", str(path)), "permission denied")


def test_conf_d_directory_merged_in_order(tmp_path):
    shared, workers = modern_deployment()
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    confd = tmp_path / "conf.d"
    confd.mkdir()
    (confd / "10-redis.yaml").write_text("redis: {enabled: false}\n")
    (confd / "20-redis.yaml").write_text("redis: {enabled: true, port: 6390}\n")
    done = synsup("check", "--json", "-c", config, "-c", str(confd), "-a", workers_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["steps"][0] == ["redis", "postgres"]
    done = synsup("check", "-c", config, "-c", str(confd), "-a", workers_dir)
    assert "redis 127.0.0.1:6390" in done.stdout or "redis localhost:6390" in done.stdout


def test_positional_configfile_as_synctl(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    done = synsup("check", config, "--all-processes", workers_dir)
    assert done.returncode == 0, done.stderr


def test_json_output_and_steps(tmp_path):
    config, workers_dir = write_deployment(str(tmp_path), *modern_deployment())
    done = synsup("check", "--json", "-c", config, "-a", workers_dir)
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["errors"] == []
    assert result["steps"] == [["redis", "postgres"], ["main"], ["persister1", "persister2"],
                               ["generic1", "pusher1", "sender1"]]


def test_json_errors_have_file_line_message(tmp_path):
    shared, workers = modern_deployment()
    shared["stream_writers"]["typing"] = ["persister1", "persister2"]
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    done = synsup("check", "--json", "-c", config, "-a", workers_dir)
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["ok"] is False
    error = result["errors"][0]
    assert set(error) == {"file", "line", "message"} and error["file"] == config and isinstance(error["line"], int)


def test_fixture_deployments_pass(tmp_path):
    for name in ("modern", "v166"):
        base = os.path.join(HERE, "fixtures", name)
        done = synsup("check", "-c", os.path.join(base, "homeserver.yaml"), "-a", os.path.join(base, "workers"),
                      env_extra={"SYNAPSE_FAKE_VERSION": "1.66.0" if name == "v166" else "1.163.0"})
        assert done.returncode == 0, done.stderr
        assert "step 3" in done.stdout


def test_v166_fixture_rejected_by_modern_synapse():
    base = os.path.join(HERE, "fixtures", "v166")
    done = synsup("check", "-c", os.path.join(base, "homeserver.yaml"), "-a", os.path.join(base, "workers"),
                  env_extra={"SYNAPSE_FAKE_VERSION": "1.120.0"})
    assert done.returncode == 1
    assert "Synapse 1.120.0 rejects `worker_replication_host`" in done.stderr


def test_version_and_help():
    assert synsup("--version").stdout.startswith("synsup ")
    for command in ("check", "start", "stop", "status", "restart", "reload", "logs"):
        done = synsup(command, "--help")
        assert done.returncode == 0 and "usage: synsup " + command in done.stdout


def test_ignore_silences_a_warning_code_and_json_carries_codes(tmp_path):
    shared, workers = modern_deployment()
    shared["pid_file"] = "/run/hs.pid"
    config, workers_dir = write_deployment(str(tmp_path), shared, workers)
    done = synsup("check", "-c", config, "-a", workers_dir)
    assert done.returncode == 0 and "warning: `pid_file` is unused" in done.stderr
    assert done.stderr.rstrip().endswith("[unused-key]")
    result = json.loads(synsup("check", "--json", "-c", config, "-a", workers_dir).stdout)
    assert [w["code"] for w in result["warnings"]] == ["unused-key"]
    done = synsup("check", "--ignore", "unused-key", "-c", config, "-a", workers_dir)
    assert done.returncode == 0 and "warning" not in done.stderr


def test_ignore_takes_only_known_codes_and_start_accepts_it():
    done = synsup("check", "--ignore", "no-such-code")
    assert done.returncode == 2 and "no-such-code" in done.stderr and "unused-key" in done.stderr
    for command in ("check", "start", "run"):
        assert "--ignore CODE" in synsup(command, "--help").stdout


def test_readme_lists_every_warning_code():
    from synsup.units.warning_codes import WARNING_CODES
    with open(os.path.join(os.path.dirname(HERE), "README.md")) as f:
        readme = f.read()
    assert [code for code in WARNING_CODES if f"| `{code}` |" not in readme] == []
