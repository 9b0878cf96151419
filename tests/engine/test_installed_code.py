"""Code installed under a running unit (supervisor/installed.py): found by a stat at a crash
restart, the installed version read from the dist-info name."""

from __future__ import annotations

import os
import sys

from helpers import FAKE_SYNAPSE, modern_deployment, write_deployment

from synsup.supervisor.engine.installed_code import InstalledCode
from synsup.supervisor.spec import UnitSpec
from synsup.units.check import check_deployment
from synsup.units.unit_specs import unit_specs


def install(site, version):
    os.makedirs(site / "synapse", exist_ok=True)
    for old in site.glob("matrix_synapse-*.dist-info"):
        os.rmdir(old)
    os.mkdir(site / f"matrix_synapse-{version}.dist-info")
    path = site / "synapse" / "__init__.py"
    tmp = site / "synapse" / "new.py"
    tmp.write_text(f"__version__ = {version!r}\n")
    os.replace(tmp, path)  # as pip does: a new file (new inode)
    return str(path)


def spec(site, version, path):
    return UnitSpec(name="main", argv=("python",), code_name="Synapse", version=version, code_file=path,
                    code_version_glob=str(site / "matrix_synapse-*.dist-info"))


def test_a_crash_restart_on_replaced_code_is_reported(tmp_path):
    path = install(tmp_path, "1.163.0")
    running = spec(tmp_path, "1.163.0", path)
    code = InstalledCode()
    code.at_spawn(running)
    code.at_spawn(running)  # a crash restart, nothing changed
    assert code.note(running) is None
    install(tmp_path, "1.164.0")
    code.at_spawn(running)  # a crash restart after `pip install -U` underneath
    assert code.note(running) == "Synapse 1.164.0 installed, 1.163.0 running: run synsup upgrade"


def test_a_new_spec_takes_the_installed_code_as_its_own(tmp_path):
    path = install(tmp_path, "1.163.0")
    code = InstalledCode()
    code.at_spawn(spec(tmp_path, "1.163.0", path))
    install(tmp_path, "1.164.0")
    upgraded = spec(tmp_path, "1.164.0", path)
    code.at_spawn(upgraded)  # started by `synsup upgrade`
    assert code.note(upgraded) is None


def test_specs_carry_the_version_and_package_file_of_the_version_check(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", FAKE_SYNAPSE)
    config, workers = write_deployment(str(tmp_path), *modern_deployment())
    result = check_deployment([config], workers, sys.executable)
    main = next(s for s in unit_specs(result.deployment, synapse_version=result.synapse_version,
                                      synapse_file=result.synapse_file) if s.kind == "main")
    assert main.version == "1.163.0" and main.code_file == os.path.join(FAKE_SYNAPSE, "synapse", "__init__.py")
