"""Run by synsup under the deployment's `--python` (which need not have synsup installed), by
path: Synapse's own config loader on each process's config, exactly as that process will
start. Imports Synapse once, then forks one child per process (all in parallel, each with a
time limit). Reads the job list on stdin; writes the marker line, then one JSON object
{"version": ..., "file": ..., "results": {name: message or null}}. Called by
units/synapse_validate.py."""
# mypy: disable-error-code="no-untyped-def, no-untyped-call, import-not-found, import-untyped"

import io
import json
import os
import select
import sys
import time

MARKER = "synsup-validate"  # units/synapse_validate.py looks for it
out = os.fdopen(os.dup(1), "w")
out.write(MARKER + "\n")
out.flush()
jobs = json.load(sys.stdin)
try:
    import synapse
    from synapse.config._base import ConfigError, format_config_error
    from synapse.config.homeserver import HomeServerConfig
except Exception as e:
    out.write(json.dumps({"import_error": f"{type(e).__name__}: {e}"}))
    sys.exit(0)

def load(job):
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    # load_config, not load_or_generate_config: a check writes no file. Main would generate a
    # missing signing key at start, so that one complaint is not held against main.
    try:
        config = HomeServerConfig.load_config("Synapse", job["args"])
        if job["main"] and config.worker.worker_app:
            return "You have specified `worker_app` in the config but are attempting to setup a non-worker instance"
    except ConfigError as e:
        if job["main"] and list(e.path or []) == ["signing_key"]:
            return None
        return {"message": "".join(format_config_error(e)), "path": [str(p) for p in e.path or []]}
    except SystemExit:
        return sys.stderr.getvalue().strip() or "Synapse's config loader exited"
    except Exception as e:
        return problem(e)
    return None

def problem(e):
    name = type(e).__name__
    if name == "DependencyException":  # args[0]: the missing distributions
        missing = [str(m) for m in (e.args[0] if e.args else [])]
        return {"message": f"{name}: {missing}", "missing": missing, "extras": extras_of(missing)}
    text = e.args[0] if len(e.args) > 1 and isinstance(e.args[0], str) else e  # attrs: (message, attribute, ...)
    return f"{name}: {text}"

def extras_of(missing):
    """For each missing distribution, the extras of matrix-synapse that pull it in (its own metadata)."""
    import re
    from importlib import metadata
    try:
        lines = metadata.requires("matrix-synapse") or []
    except Exception:
        return {}
    wanted, extras = {m.lower().replace("_", "-"): m for m in missing}, {}
    for line in lines:
        name = re.match(r"[A-Za-z0-9._-]*", line).group(0).lower().replace("_", "-")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", line)
        if name in wanted and extra and extra.group(1) != "all":
            extras.setdefault(wanted[name], []).append(extra.group(1))
    return extras

# the first load imports what the others need: do it here, so each child only parses
results = {}
first, *rest = jobs["processes"]
results[first["name"]] = load(first)
children: dict[int, tuple[str, int, list[bytes]]] = {}
for job in rest:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            message = load(job)
        except BaseException as e:
            message = f"{type(e).__name__}: {e}"
        os.write(w, json.dumps(message).encode())
        os._exit(0)
    os.close(w)
    children[r] = (job["name"], pid, [])
deadline = time.monotonic() + jobs["time_limit"]
while children and time.monotonic() < deadline:
    readable, _, _ = select.select(list(children), [], [], max(0.0, deadline - time.monotonic()))
    for fd in readable:
        chunk = os.read(fd, 65536)
        name, pid, parts = children[fd]
        if chunk:
            parts.append(chunk)
            continue
        os.close(fd)
        os.waitpid(pid, 0)
        del children[fd]
        try:
            results[name] = json.loads(b"".join(parts) or b'"the config loader died"')
        except ValueError:
            results[name] = "the config loader died"
for _fd, (name, pid, _parts) in children.items():
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    results[name] = "Synapse's config loader did not finish within {:g}s".format(jobs["time_limit"])
out.write(json.dumps({"version": synapse.__version__, "file": synapse.__file__, "results": results}))
out.flush()
