"""Synapse's own config validation: load each process's config with Synapse's loader, exactly
as that process will start, in one subprocess of `--python` that imports Synapse once and
forks one child per process (all in parallel, each with a time limit)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field

from .check_cache import CheckCache, inputs_digest
from .model import Deployment, Finding, Process, error
from .yamldoc import Where

TIME_LIMIT = 30.0  # for one process's config load
MARKER = "synsup-validate"

# Runs under --python (which need not have synsup installed): stdin is the job list, stdout
# the marker line, then one JSON object {"version": ..., "results": {name: message or null}}.
SCRIPT = r'''
import io, json, os, select, sys, time
out = os.fdopen(os.dup(1), "w")
out.write("MARKER\n"); out.flush()
jobs = json.load(sys.stdin)
try:
    import synapse
    from synapse.config._base import ConfigError, format_config_error
    from synapse.config.homeserver import HomeServerConfig
except Exception as e:
    out.write(json.dumps({"import_error": "%s: %s" % (type(e).__name__, e)})); sys.exit(0)

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
        return {"message": "".join(format_config_error(e)), "key": (list(e.path or []) or [None])[0]}
    except SystemExit:
        return sys.stderr.getvalue().strip() or "Synapse's config loader exited"
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    return None

# the first load imports what the others need: do it here, so each child only parses
results = {}
first, *rest = jobs["processes"]
results[first["name"]] = load(first)
children = {}
for job in rest:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            message = load(job)
        except BaseException as e:
            message = "%s: %s" % (type(e).__name__, e)
        os.write(w, json.dumps(message).encode()); os._exit(0)
    os.close(w)
    children[r] = (job["name"], pid, [])
deadline = time.monotonic() + jobs["time_limit"]
while children and time.monotonic() < deadline:
    readable, _, _ = select.select(list(children), [], [], max(0.0, deadline - time.monotonic()))
    for fd in readable:
        chunk = os.read(fd, 65536)
        name, pid, parts = children[fd]
        if chunk:
            parts.append(chunk); continue
        os.close(fd); os.waitpid(pid, 0); del children[fd]
        try:
            results[name] = json.loads(b"".join(parts) or b'"the config loader died"')
        except ValueError:
            results[name] = "the config loader died"
for fd, (name, pid, _) in children.items():
    os.kill(pid, 9); os.waitpid(pid, 0)
    results[name] = "Synapse's config loader did not finish within %gs" % jobs["time_limit"]
out.write(json.dumps({"version": synapse.__version__, "file": synapse.__file__, "results": results})); out.flush()
'''.replace("MARKER", MARKER)


@dataclass
class Validation:
    version: str | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    package_file: str = ""  # synapse/__init__.py of the Synapse that --python runs


def _job(d: Deployment, p: Process) -> dict:
    files = d.config_files if p.kind == "main" else d.config_files + (p.file or "",)
    args = [a for f in files for a in ("--config-path", os.path.abspath(f))]
    return {"name": p.name, "main": p.kind == "main", "args": args}


def _python_error(python: str, why: str) -> Finding:
    return error(Where(python), f"--python {python} {why}; pass the interpreter of Synapse's "
                 "virtualenv (e.g. --python /opt/venvs/matrix-synapse/bin/python)")


def _one_line(message: str, limit: int = 240) -> str:
    """Synapse's message on one line; past `limit`, only its sentences up to the limit."""
    text = " ".join(part.strip() for part in message.strip().splitlines() if part.strip())
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[: cut + 1] if cut > 0 else text[:limit] + "..."


def _key_named(p: Process, message: str, key: object) -> str | None:
    """The top-level key Synapse's message is about: its path, else a key whose value it quotes."""
    if isinstance(key, str) and key in p.config:
        return key
    merged = p.config.as_dict()
    return next((k for k, v in merged.items() if isinstance(v, str | int) and not isinstance(v, bool)
                 and f"'{v}'" in message), None)


def _findings(d: Deployment, results: dict) -> list[Finding]:
    """One finding per distinct message, at the first rejecting process's key: a bad shared value
    that every process rejects is one line, at the shared config."""
    by_message: dict[str, tuple[Where, list[str]]] = {}
    for p in d.processes:
        result = results.get(p.name)
        if not result:
            continue
        message = _one_line(result["message"] if isinstance(result, dict) else str(result))
        at = p.at(_key_named(p, message, result.get("key") if isinstance(result, dict) else None))
        by_message.setdefault(message, (at, []))[1].append(p.name)
    every = len(d.processes) > 1
    return [error(at, f"{'every process' if every and len(names) == len(d.processes) else ', '.join(names)}: "
                  f"Synapse rejects this config: {message}; fix it as Synapse says")
            for message, (at, names) in by_message.items()]


def validate(d: Deployment, time_limit: float = TIME_LIMIT, cache: CheckCache | None = None) -> Validation:
    """Synapse's verdict on every process's config, and the version it would run (a passing
    verdict from `cache` when nothing it read changed since)."""
    jobs = {"time_limit": time_limit, "processes": [_job(d, p) for p in d.processes]}
    digest = inputs_digest(jobs, d.python, [p.config.as_dict() for p in d.processes], SCRIPT) if cache else ""
    cached = cache.get(digest) if cache else None
    if cached is not None:
        return _verdict(d, json.dumps(cached))
    try:
        done = subprocess.run([d.python, "-c", SCRIPT], input=json.dumps(jobs), capture_output=True,
                              text=True, timeout=time_limit + 30)
    except OSError as e:
        return Validation(findings=[_python_error(d.python, f"cannot run: {e.strerror or e}")])
    except subprocess.TimeoutExpired:
        return Validation(notes=[f"Synapse's config checks with {d.python} did not finish; skipped"])
    head, _, body = done.stdout.partition("\n")
    if head != MARKER:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return Validation(findings=[_python_error(d.python, f"is not a working Python ({last})")])
    if cache:
        _keep(cache, digest, body)
    return _verdict(d, body)


def _keep(cache: CheckCache, digest: str, body: str) -> None:
    try:
        cache.put(digest, json.loads(body))
    except (ValueError, AttributeError):
        pass


def _verdict(d: Deployment, body: str) -> Validation:
    try:
        reply = json.loads(body)
    except ValueError:
        return Validation(notes=["Synapse's config checks gave no answer; skipped"])
    if "import_error" in reply:
        return Validation(notes=[f"Synapse is not importable with {d.python} ({reply['import_error']}); "
                                 "Synapse's own config checks and version checks skipped"])
    return Validation(reply.get("version"), _findings(d, reply.get("results") or {}),
                      package_file=str(reply.get("file") or ""))
