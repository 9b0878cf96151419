"""cluster.yaml read into ClusterConfig; every mistake is one line naming the file, the key with
its line, and the fix."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from synsup.supervisor.cluster_config import ClusterConfigError, read_cluster_config

GOOD = """\
name: prod
store:
  endpoints: [http://10.0.0.1:2379, http://10.0.0.2:2379]
nodes:
  a: {address: 10.0.0.1}
  b: {address: 10.0.0.2}
placement:
  main: a
  redis: a
  persister1: b
"""


def write(tmp_path: pathlib.Path, text: str) -> str:
    path = tmp_path / "cluster.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_a_good_file_is_read_with_defaults(tmp_path: pathlib.Path) -> None:
    cluster = read_cluster_config(write(tmp_path, GOOD))
    assert cluster.name == "prod"
    assert cluster.store.endpoints == ("http://10.0.0.1:2379", "http://10.0.0.2:2379")
    assert (cluster.store.prefix, cluster.store.ttl, cluster.store.tls) == ("/synsup/prod/", 30, None)
    assert cluster.nodes["b"].address == "10.0.0.2"
    assert cluster.placement == {"main": "a", "redis": "a", "persister1": "b"}
    assert cluster.line_of("placement.persister1") == 10
    assert cluster.node_at("10.0.0.2") == "b" and cluster.node_at("10.9.9.9") is None


def test_tls_files_are_found_beside_the_cluster_file(tmp_path: pathlib.Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    text = GOOD.replace("http://", "https://").replace(
        "nodes:", "  tls: {ca: ca.pem, cert: client.pem, key: client.key}\n  username: synsup\n"
        "  password: s3cret\n  prefix: /x/y\n  ttl: 10\nnodes:")
    store = read_cluster_config(write(tmp_path, text)).store
    assert store.tls is not None and store.tls.ca == str(tmp_path / "ca.pem")
    assert (store.username, store.password, store.prefix, store.ttl) == ("synsup", "s3cret", "/x/y/", 10)


BAD = [  # (what is changed in GOOD, the line, the key, words of the fix)
    (("  persister1: b", "  persister1: c"), 10, "placement.persister1", "no node named 'c'; use one of a, b"),
    (("  persister1: b", "  persister1: b\n  main: b"), 11, "placement.main", "written twice (first on line 8)"),
    (("http://10.0.0.2:2379", "10.0.0.2:2379"), 3, "store.endpoints", "is not an http(s)://HOST:PORT URL"),
    (("http://10.0.0.2:2379", "http://10.0.0.2"), 3, "store.endpoints", "is not an http(s)://HOST:PORT URL"),
    (("http://10.0.0.2:2379", "http://10.0.0.2:2379/v3"), 3, "store.endpoints", "http(s)://HOST:PORT"),
    (("http://10.0.0.2:2379", "https://10.0.0.2:2379"), 3, "store.endpoints", "mixes http:// and https://"),
    (("[http://10.0.0.1:2379, http://10.0.0.2:2379]", "[https://e:2379]"), 3, "store.endpoints",
     "add store.tls.ca"),
    (("nodes:", "  tls: {ca: missing.pem}\nnodes:"), 4, "store.tls.ca", "missing.pem is not a readable file"),
    (("nodes:", "  tls: {ca: x, cert: y}\nnodes:"), 4, "store.tls", "cert and key go together"),
    (("nodes:", "  ttl: 0\nnodes:"), 4, "store.ttl", "is not a whole number of seconds from 2 to 3600"),
    (("nodes:", "  username: me\nnodes:"), 4, "store.username", "username and password go together"),
    (("nodes:", "  endpoint: x\nnodes:"), 4, "store.endpoint", "unknown key; the keys are endpoints"),
    (("10.0.0.2}", "10.0.0.1}"), 6, "nodes.b.address", "is node a's address too"),
    (("{address: 10.0.0.2}", "{address: 127.0.0.1}"), 6, "nodes.b.address", "is this host only"),
    (("{address: 10.0.0.2}", "{}"), 6, "nodes.b", "expected {address: HOST}"),
    (("name: prod", "name: 'two words'"), 1, "name", "is not a name"),
    (("name: prod", "name: prod\nplacment: {}"), 2, "placment", "unknown key; the keys are name, store"),
    (("name: prod", "name: prod\nself_fence: maybe"), 2, "self_fence", "is not true or false"),
]


@pytest.mark.parametrize("change, line, key, fix", BAD, ids=[b[2] + ":" + b[3][:20] for b in BAD])
def test_a_mistake_is_one_line_with_file_key_and_fix(tmp_path: pathlib.Path, change: tuple[str, str],
                                                     line: int, key: str, fix: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ClusterConfigError) as raised:
        read_cluster_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:{line}: {key}: ") and fix in message
    assert "\n" not in message


def test_unreadable_and_broken_files_are_one_line(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ClusterConfigError, match=r"cannot read the cluster file: No such file"):
        read_cluster_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ClusterConfigError, match=r"cluster.yaml:3: not valid YAML: expected ','"):
        read_cluster_config(write(tmp_path, "name: x\nnodes: [a\n"))
    with pytest.raises(ClusterConfigError, match=r"\(top level\): expected a mapping"):
        read_cluster_config(write(tmp_path, "- a\n"))
