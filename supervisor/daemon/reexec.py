"""`synsup reexec`: the daemon re-executes itself in place (the binary upgrade nginx and HAProxy
do), after `pip install -U synsup`. Same pid, so systemd sees no restart; the units are its
children still and are adopted by the new image (engine/adopted.py); the listening control
socket is passed across exec as an inherited fd named in $SYNSUP_REEXEC, with what else the new
image needs (units held by the admin, pause). The new code is tried first: the same interpreter,
its options and the same script or `-m` module as the exec will run, with `--version` (which
imports the daemon's code), in a subprocess given `--trial-timeout`; a new version that fails or
hangs is never exec'd, and an exec that fails leaves the old image running."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from ..protocol import ReexecReply, Refusal
from .control_server import Send

if TYPE_CHECKING:
    from ..engine.supervisor import Supervisor
    from .operations import Lifecycle, Operations

ENV = "SYNSUP_REEXEC"
TRY_TIMEOUT = 60.0  # seconds the trial of the new image may take (`reexec --trial-timeout`)

log = structlog.get_logger()


class ReexecView(Protocol):
    """What `reexec` uses of the daemon: whether it is busy, what the new image takes over."""

    @property
    def supervisor(self) -> Supervisor | None: ...

    @property
    def operations(self) -> Operations: ...

    @property
    def lifecycle(self) -> Lifecycle: ...

    @property
    def control_fd(self) -> int | None: ...

    @property
    def paused(self) -> bool: ...

    def hand_over(self) -> None: ...


@dataclass(frozen=True)
class Inherited:
    control_fd: int
    held: tuple[str, ...] = ()
    paused: bool = False


def inherited() -> Inherited | None:
    """What the previous image passed on (and removed from the environment units inherit)."""
    raw = os.environ.pop(ENV, None)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Inherited(int(data["control_fd"]), tuple(data.get("held") or ()), bool(data.get("paused")))
    except (ValueError, KeyError, TypeError):
        log.error("reexec.bad_environment", value=raw[:200])
        return None


def trial_argv(orig_argv: list[str], argv: list[str]) -> list[str]:
    """What the exec will run up to its command (the interpreter, its options, the script or
    `-m MODULE`), with `--version`."""
    prefix = orig_argv[:len(orig_argv) - len(argv) + 1]
    return (prefix if len(argv) < len(orig_argv) else [sys.executable, "-m", "synsup"]) + ["--version"]


def new_image_fails(timeout: float = TRY_TIMEOUT) -> str | None:
    """Why the installed synsup would not come up (None if it does): run it once first."""
    argv = trial_argv(sys.orig_argv, sys.argv)
    shown = " ".join(argv)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"`{shown}` did not come up within {timeout:g} s"
    except OSError as e:
        return f"cannot run `{shown}`: {e}"
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return f"`{shown}` exited with code {done.returncode}: {tail}"
    return None


def exec_in_place(passed: Inherited) -> OSError:
    """Replace this process's image by the installed synsup with the same command line; only
    returns (the error) if the exec failed, with the old image still running."""
    os.set_inheritable(passed.control_fd, True)
    env = {**os.environ, ENV: json.dumps({"control_fd": passed.control_fd, "held": list(passed.held),
                                          "paused": passed.paused})}
    log.info("daemon.reexec", argv=sys.orig_argv, pid=os.getpid())
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as e:
        os.set_inheritable(passed.control_fd, False)
        log.error("daemon.reexec_failed", error=str(e))
        return e
    raise AssertionError("unreachable")  # pragma: no cover


async def reexec(daemon: ReexecView, send: Send, trial_timeout: float | None = None) -> None:
    """The `reexec` request: refused while an operation runs; the new code tried first; the
    reply sent; the records written for the new image to adopt from; then the exec."""
    busy = daemon.operations.current or ("stop" if daemon.lifecycle.stopping else None)
    if busy:
        await send(Refusal(f"still running: {busy}; try again when it is done"))
        return
    why = await asyncio.to_thread(new_image_fails, trial_timeout or TRY_TIMEOUT)
    if why is not None:
        await send(Refusal(f"the installed synsup does not come up ({why}); the running one "
                           "goes on unchanged"))
        return
    sup, control_fd = daemon.supervisor, daemon.control_fd
    assert sup is not None and control_fd is not None
    await send(ReexecReply(os.getpid()))
    daemon.hand_over()  # after the last await: no change of a unit comes between its records and the exec
    held = tuple(name for name, unit in sup.units.items() if unit.held)
    failed = exec_in_place(Inherited(control_fd, held, daemon.paused))
    log.error("daemon.reexec_failed", error=str(failed))
