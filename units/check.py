"""Run every rule over a deployment and collect the findings."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field

from . import metrics_listeners, rules_agreement, rules_duties, rules_processes, rules_replication
from .check_cache import CheckCache
from .loader import load_deployment
from .model import Deployment, Finding
from .rules_processes import who
from .synapse_findings import without_repeats
from .synapse_validate import Validation, validate
from .synapse_version import version_rules

ERROR_RULES = rules_processes.RULES + rules_replication.RULES + rules_duties.RULES + rules_agreement.RULES
WARNING_RULES = (rules_duties.WARNINGS + rules_processes.WARNINGS + metrics_listeners.WARNINGS
                 + rules_agreement.WARNINGS)


@dataclass
class CheckResult:
    deployment: Deployment | None
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    synapse_version: str | None = None  # the version --python runs, when it could be read
    synapse_file: str = ""  # its synapse/__init__.py

    @property
    def ok(self) -> bool:
        return not self.errors


def run_rules(d: Deployment, synapse_version: str | None) -> list[Finding]:
    findings: list[Finding] = []
    for rule in ERROR_RULES + WARNING_RULES:
        findings.extend(rule(d))
    if synapse_version:
        findings.extend(version_rules(d, synapse_version))
    return one_per_line(d, findings)


def one_per_line(d: Deployment, findings: list[Finding]) -> list[Finding]:
    """Findings at one line that differ only in the process they start with ("NAME: ..."), as one
    naming them all: a shared key every worker inherits is one finding, not one per worker."""
    processes = {p.name for p in d.processes}
    merged: dict[tuple, tuple[Finding, list[str]]] = {}
    for f in findings:
        name, _, rest = f.message.partition(": ")
        same = (f.severity, f.file, f.line, f.code, rest) if name in processes and f.line else (f,)
        merged.setdefault(same, (f, []))[1].append(name)
    return [f if len(names) == 1 else dataclasses.replace(f, message=f"{who(d, names)}: {f.message.partition(': ')[2]}")
            for f, names in merged.values()]


def check_deployment(
    config_paths: list[str], workers_dir: str | None, python: str, read_version: bool = True,
    ignore: Collection[str] = (),
    cache: CheckCache | None = None,
) -> CheckResult:
    """Every rule, then (with `read_version`) Synapse's own loader on every process's config
    (its passing verdict reused from `cache` while nothing it read changed); warnings whose code
    is in `ignore` are left out."""
    loaded = load_deployment(config_paths, workers_dir, python)
    findings = list(loaded.findings)
    result = CheckResult(loaded.deployment)
    if loaded.deployment is not None:
        synapse = validate(loaded.deployment, cache=cache) if read_version else Validation()
        result.notes, result.synapse_version = synapse.notes, synapse.version
        result.synapse_file = synapse.package_file
        own = run_rules(loaded.deployment, synapse.version)
        findings.extend(own + without_repeats(synapse.findings, own, loaded.deployment))
    for f in findings:
        if f.severity == "error":
            result.errors.append(f)
        elif f.code not in ignore:
            result.warnings.append(f)
    return result
