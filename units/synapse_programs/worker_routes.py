"""Run by synsup under the deployment's `--python` (which need not have synsup installed), by
path: the endpoints a generic worker serves, from the installed Synapse's own servlet registry,
through the functions of `python -m synapse._scripts.generate_workers_map` (Synapse 1.81+).

The script itself prints every named group as `.*`, which turns
`rooms/(?P<room_id>[^/]*)/(?P<membership_action>join|invite|...)` into `rooms/.*/.*$` (every
room path); here only the group names are dropped, so each pattern is Synapse's exact regex (PCRE,
which HAProxy and nginx use, reads it the same). Reads {"config": {...}} on stdin (a minimal
homeserver config); writes the marker line, then one JSON object
{"version": ..., "routes": [[method, regex, category or null], ...]} or {"missing": why}.
Called by units/route_source.py."""
# mypy: disable-error-code="no-untyped-def, no-untyped-call, import-not-found, import-untyped"

import io
import json
import logging
import os
import re
import sys
import tempfile

MARKER = "synsup-worker-routes"  # units/route_source.py looks for it
out = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
logging.disable(logging.CRITICAL)
out.write(MARKER + "\n")
out.flush()
job = json.load(sys.stdin)
try:
    import synapse
    from signedjson.key import generate_signing_key, write_signing_keys
    from synapse._scripts import generate_workers_map as workers_map
    from synapse.config.homeserver import HomeServerConfig
except Exception as e:
    out.write(json.dumps({"missing": f"{type(e).__name__}: {e}"}))
    sys.exit(0)

GROUP_NAME = re.compile(r"\(\?P<[^>]+>")


def homeserver_config(directory):
    key = os.path.join(directory, "signing.key")
    with open(key, "w") as f:
        write_signing_keys(f, [generate_signing_key("synsup")])
    config = HomeServerConfig()
    config.parse_config_dict(dict(job["config"], signing_key_path=key), directory, directory)
    return config


def worker_routes(config):
    main = workers_map.get_registered_paths_for_default(None, config)
    worker = workers_map.get_registered_paths_for_default("synapse.app.generic_worker", config)
    elided = workers_map.elide_http_methods_if_unconflicting(worker, {**main, **worker})
    return sorted([method, GROUP_NAME.sub("(", path), desc.category] for (method, path), desc in elided.items())


with tempfile.TemporaryDirectory(prefix="synsup-routes-") as directory:
    try:
        routes = worker_routes(homeserver_config(directory))
    except Exception as e:
        out.write(json.dumps({"missing": f"{type(e).__name__}: {e}"}))
        sys.exit(0)
out.write(json.dumps({"version": synapse.__version__, "routes": routes}))
out.flush()
