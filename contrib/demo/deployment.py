"""Writes the demo deployment: homeserver.yaml, a log config and a worker directory.

Used by up.sh (fixed ports) and by the end-to-end tests (free ports, their own database).
Usage: python deployment.py DIR --python PYTHON [--db-name NAME --db-user USER --db-password PW]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess

import yaml

# "front": where clients come in, HAProxy in front of every process (up.sh); main serves on its own port.
DEFAULT_PORTS = {"front": 8008, "main": 8010, "replication": 9093, "persister1": 9101, "persister2": 9102,
                 "generic1": 8081, "redis": 6379}
PROCESSES = ("main", "persister1", "persister2", "generic1", "sender1", "pusher1", "background1")
# Each process's metrics listener, on "metrics_<process>"; a deployment written without these
# ports has no metrics listeners.
DEFAULT_PORTS.update({f"metrics_{name}": 9410 + i for i, name in enumerate(PROCESSES)})
LOG_CONFIG = {
    "version": 1,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"synapse.storage.SQL": {"level": "WARNING"}, "synapse.access": {"level": "WARNING"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "disable_existing_loggers": False,
}
UNLIMITED = {"per_second": 1000, "burst_count": 1000}


def http(port: int, *names: str) -> dict:
    return {"type": "http", "port": port, "bind_addresses": ["127.0.0.1"], "tls": False,
            "resources": [{"names": list(names), "compress": False}]}


def metrics(ports: dict, name: str) -> list[dict]:
    port = ports.get(f"metrics_{name}")
    return [{"type": "metrics", "port": port, "bind_addresses": ["127.0.0.1"]}] if port else []


def generated_secrets(directory: str, python: str) -> dict:
    """Synapse's own generated secrets and signing key, made once and reused."""
    generated = os.path.join(directory, "generated.yaml")
    if not os.path.exists(generated):
        subprocess.run([python, "-m", "synapse.app.homeserver", "--server-name", "localhost",
                        "--config-path", generated, "--generate-config", "--report-stats=no"],
                       cwd=directory, check=True, stdout=subprocess.DEVNULL)
    with open(generated) as f:
        config = yaml.safe_load(f)
    return {k: config[k] for k in ("registration_shared_secret", "macaroon_secret_key", "form_secret",
                                   "signing_key_path")}


def shared_config(directory: str, ports: dict, database: dict, python: str) -> dict:
    local = {"host": "127.0.0.1"}
    return {
        "server_name": "localhost",
        "public_baseurl": f"http://127.0.0.1:{ports.get('front', ports['main'])}/",
        "report_stats": False,
        "listeners": [http(ports["main"], "client", "federation"), http(ports["replication"], "replication"),
                      *metrics(ports, "main")],
        "enable_metrics": any(k.startswith("metrics_") for k in ports),
        "database": {"name": "psycopg2", "args": {**database, "host": "127.0.0.1", "cp_min": 1, "cp_max": 5}},
        "redis": {"enabled": True, "host": "127.0.0.1", "port": ports["redis"]},
        "log_config": os.path.join(directory, "log.yaml"),
        "media_store_path": os.path.join(directory, "media_store"),
        **generated_secrets(directory, python),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "enable_registration": False,
        "worker_replication_secret": secrets.token_hex(16),
        "instance_map": {"main": {**local, "port": ports["replication"]},
                         "persister1": {**local, "port": ports["persister1"]},
                         "persister2": {**local, "port": ports["persister2"]}},
        "stream_writers": {"events": ["persister1", "persister2"]},
        "federation_sender_instances": ["sender1"],
        "pusher_instances": ["pusher1"],
        "run_background_tasks_on": "background1",
        "rc_message": UNLIMITED,
        "rc_registration": UNLIMITED,
        "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
    }


def workers(directory: str, ports: dict) -> dict:
    log = os.path.join(directory, "log.yaml")

    def worker(name: str, *listeners: dict) -> dict:
        doc = {"worker_app": "synapse.app.generic_worker", "worker_name": name, "worker_log_config": log}
        listeners += tuple(metrics(ports, name))
        if listeners:
            doc["worker_listeners"] = list(listeners)
        return doc

    return {
        "persister1": worker("persister1", http(ports["persister1"], "replication")),
        "persister2": worker("persister2", http(ports["persister2"], "replication")),
        "generic1": worker("generic1", http(ports["generic1"], "client", "federation")),
        "sender1": worker("sender1"),
        "pusher1": worker("pusher1"),
        "background1": worker("background1"),
    }


def dump(path: str, data: dict) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)


def write(directory: str, python: str, database: dict, ports: dict | None = None) -> tuple[str, str]:
    """Write (or rewrite) the deployment; return (homeserver.yaml, worker directory)."""
    ports = ports or DEFAULT_PORTS
    directory = os.path.abspath(directory)
    os.makedirs(os.path.join(directory, "workers"), exist_ok=True)
    os.makedirs(os.path.join(directory, "media_store"), exist_ok=True)
    dump(os.path.join(directory, "log.yaml"), LOG_CONFIG)
    config = os.path.join(directory, "homeserver.yaml")
    dump(config, shared_config(directory, ports, database, python))
    for name, doc in workers(directory, ports).items():
        dump(os.path.join(directory, "workers", f"{name}.yaml"), doc)
    return config, os.path.join(directory, "workers")


def _admin(sql: str, role: dict) -> None:
    import psycopg2  # from matrix-synapse[postgres]
    connection = psycopg2.connect(**{"host": "127.0.0.1", "dbname": "postgres", **role})  # role may name host, port
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql)
    connection.close()


def create_database(name: str, role: dict) -> None:
    """A database as Synapse wants it (UTF8, C locale), owned by `role` ({user, password}, and
    host and port when not the machine's cluster on 127.0.0.1)."""
    _admin(f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0", role)


def drop_database(name: str, role: dict) -> None:
    _admin(f"DROP DATABASE IF EXISTS {name}", role)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--python", required=True)
    parser.add_argument("--db-name", default="synapse")
    parser.add_argument("--db-user", default="synapse")
    parser.add_argument("--db-password", default="synapse")
    args = parser.parse_args()
    if os.path.exists(os.path.join(args.directory, "homeserver.yaml")):
        print(f"reusing {args.directory}/homeserver.yaml")
        return
    write(args.directory, args.python, {"user": args.db_user, "password": args.db_password,
                                        "database": args.db_name})
    print(f"wrote {args.directory}/homeserver.yaml and {args.directory}/workers/")


if __name__ == "__main__":
    main()
