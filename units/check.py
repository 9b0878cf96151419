"""Run every rule over a deployment and collect the findings."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import rules_duties, rules_processes, rules_replication, targets
from .loader import load_deployment
from .model import Deployment, Finding
from .synapse_version import installed_version, version_rules

ERROR_RULES = rules_processes.RULES + rules_replication.RULES + rules_duties.RULES
WARNING_RULES = rules_duties.WARNINGS + targets.WARNINGS


@dataclass
class CheckResult:
    deployment: Deployment | None
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    synapse_version: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def run_rules(d: Deployment, synapse_version: str | None) -> list[Finding]:
    findings: list[Finding] = []
    for rule in ERROR_RULES + WARNING_RULES:
        findings.extend(rule(d))
    if synapse_version:
        findings.extend(version_rules(d, synapse_version))
    return findings


def check_deployment(
    config_paths: list[str], workers_dir: str | None, python: str, read_version: bool = True
) -> CheckResult:
    loaded = load_deployment(config_paths, workers_dir, python)
    findings = list(loaded.findings)
    notes: list[str] = []
    version: str | None = None
    if loaded.deployment is not None:
        version, why = installed_version(python) if read_version else (None, None)
        if why:
            notes.append(why)
        findings.extend(run_rules(loaded.deployment, version))
    result = CheckResult(loaded.deployment, notes=notes, synapse_version=version)
    for f in findings:
        (result.errors if f.severity == "error" else result.warnings).append(f)
    return result
