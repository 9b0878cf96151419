"""Run every rule over a deployment and collect the findings."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import rules_duties, rules_processes, rules_replication, targets
from .check_cache import CheckCache
from .loader import load_deployment
from .model import Deployment, Finding
from .synapse_validate import Validation, validate
from .synapse_version import version_rules

ERROR_RULES = rules_processes.RULES + rules_replication.RULES + rules_duties.RULES
WARNING_RULES = rules_duties.WARNINGS + rules_processes.WARNINGS + targets.WARNINGS


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
    return findings


def check_deployment(
    config_paths: list[str], workers_dir: str | None, python: str, read_version: bool = True,
    cache: CheckCache | None = None,
) -> CheckResult:
    """Every rule, then (with `read_version`) Synapse's own loader on every process's config
    (its passing verdict reused from `cache` while nothing it read changed)."""
    loaded = load_deployment(config_paths, workers_dir, python)
    findings = list(loaded.findings)
    result = CheckResult(loaded.deployment)
    if loaded.deployment is not None:
        synapse = validate(loaded.deployment, cache=cache) if read_version else Validation()
        result.notes, result.synapse_version = synapse.notes, synapse.version
        result.synapse_file = synapse.package_file
        findings.extend(run_rules(loaded.deployment, synapse.version))
        findings.extend(synapse.findings)
    for f in findings:
        (result.errors if f.severity == "error" else result.warnings).append(f)
    return result
