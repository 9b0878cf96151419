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
from .synapse_findings import synapse_findings
from .yamldoc import Where

TIME_LIMIT = 30.0  # for one process's config load
MARKER = "synsup-validate"

# run under --python by path: synapse_programs/validate_configs.py
PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synapse_programs", "validate_configs.py")


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


def validate(d: Deployment, time_limit: float = TIME_LIMIT, cache: CheckCache | None = None) -> Validation:
    """Synapse's verdict on every process's config, and the version it would run (a passing
    verdict from `cache` when nothing it read changed since)."""
    jobs = {"time_limit": time_limit, "processes": [_job(d, p) for p in d.processes]}
    digest = inputs_digest(jobs, d.python, [p.config.as_dict() for p in d.processes], _program_text()) if cache else ""
    cached = cache.get(digest) if cache else None
    if cached is not None:
        return _verdict(d, json.dumps(cached))
    try:
        done = subprocess.run([d.python, PROGRAM], input=json.dumps(jobs), capture_output=True,
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
    return Validation(reply.get("version"), synapse_findings(d, reply.get("results") or {}),
                      package_file=str(reply.get("file") or ""))


def _program_text() -> str:
    """The loader program's text: a verdict it gave is reused only while it is the same."""
    with open(PROGRAM, encoding="utf-8") as f:
        return f.read()
