"""Whether the code a unit runs was replaced underneath it (a package upgraded in place).

At a unit's first spawn with a spec, the spec's `code_file` is stat'ed; a later spawn of the
same spec (a crash restart) that finds another inode, size or mtime means new code was
installed. Only a stat and a directory glob: nothing runs on the restart path."""

from __future__ import annotations

import glob
import os

from ..spec import UnitSpec

Stamp = tuple[int, int, int]


def stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def installed_version(pattern: str) -> str:
    """The version in the one `NAME-VERSION.dist-info` the glob matches, else ""."""
    matches = glob.glob(pattern) if pattern else []
    if len(matches) != 1:
        return ""
    name = os.path.basename(matches[0]).removesuffix(".dist-info")
    return name.split("-", 1)[1] if "-" in name else ""


class InstalledCode:
    # one per unit: no __dict__
    __slots__ = ("_spec", "_stamp", "changed")

    def __init__(self) -> None:
        self._spec: UnitSpec | None = None
        self._stamp: Stamp | None = None
        self.changed: str | None = None  # the installed version ("" when unknown) once it differs

    def at_spawn(self, spec: UnitSpec) -> None:
        if not spec.code_file:
            return
        now = stamp(spec.code_file)
        if spec != self._spec:  # started, reloaded or upgraded: this is the code it runs
            self._spec, self._stamp, self.changed = spec, now, None
        elif now != self._stamp and self.changed is None:
            self.changed = installed_version(spec.code_version_glob)

    def note(self, spec: UnitSpec) -> str | None:
        """What status says about it, e.g. "Synapse 1.164.0 installed, 1.163.0 running: run synsup upgrade"."""
        if self.changed is None or spec != self._spec:
            return None
        installed = f"{spec.code_name} {self.changed}" if self.changed else f"another {spec.code_name}"
        return f"{installed} installed, {spec.version or 'another'} running: run synsup upgrade"
