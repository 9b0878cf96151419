"""synsup installs as one import root, `synsup`, beside PyPI's supervisord (import name
`supervisor`): both work in one virtualenv, in either install order, and uninstalling one
leaves the other whole."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "contrib", "example")

pytestmark = pytest.mark.integration


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    # away from the checkout: `python -c` puts the working directory first on sys.path
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd="/")
    if check:
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", str(out), REPO)
    (path,) = out.glob("synsup-*.whl")
    return str(path)


def test_the_wheel_installs_one_import_root(wheel):
    import zipfile

    roots = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {r for r in roots if not r.endswith(".dist-info")} == {"synsup"}


def test_synsup_and_supervisord_share_a_virtualenv(tmp_path, wheel):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    bindir = venv / "bin"
    pip = [str(bindir / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    synsup, supervisord = str(bindir / "synsup"), str(bindir / "supervisord")
    check_example = (synsup, "check", "-c", os.path.join(EXAMPLE, "homeserver.yaml"), "-a",
                     os.path.join(EXAMPLE, "workers"))

    # supervisord first, then synsup (the migration path): both work
    _run(*pip, "install", "supervisor")
    _run(*pip, "install", wheel)
    assert _run(supervisord, "--version").stdout.strip()
    assert _run(synsup, "--version").stdout.startswith("synsup ")
    assert _run(str(bindir / "python"), "-m", "synsup", "--version").stdout.startswith("synsup ")
    assert "start plan:" in _run(*check_example).stdout
    _run(str(bindir / "python"), "-c", "from supervisor.process import ProcessStates")

    # uninstalling synsup leaves supervisord whole
    _run(*pip, "uninstall", "-y", "synsup")
    assert _run(supervisord, "--version").stdout.strip()
    _run(str(bindir / "python"), "-c", "import supervisor.supervisord, supervisor.process")

    # synsup after supervisord again, then supervisord removed: synsup stays whole
    _run(*pip, "install", wheel)
    _run(*pip, "uninstall", "-y", "supervisor")
    assert "start plan:" in _run(*check_example).stdout
    _run(*pip, "check")
