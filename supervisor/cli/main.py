"""The `synsup` command line: parsing, and mapping every error to one line and an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ... import version
from ..daemon.scrape_targets import FORMATS
from ..errors import SynsupError
from ..source import Source
from . import cluster, commands, completion, start, top, upgrade

COMMANDS = {
    "check": "check the configuration and print the start plan",
    "start": "start the deployment (in the background unless --foreground)",
    "run": "run the daemon in the foreground (same as start --foreground)",
    "stop": "stop every unit in reverse order and the daemon; or only the units named (they stay stopped)",
    "status": "show every unit's state (exit 0: all ready, 1: not, 3: no daemon)",
    "restart": "restart units, or everything in order",
    "reload": "re-read the configuration and apply what changed",
    "upgrade": "switch to newly installed code: check, migrate, restart unit by unit",
    "logs": "show a unit's captured output, or all units' merged",
    "reopen-logs": "reopen the unit logs and daemon.log (after rename-style logrotate; also SIGUSR1)",
    "pause": "no automatic restarts and no reloads until `synsup resume` (for maintenance)",
    "resume": "automatic restarts and reloads again",
    "reexec": "re-execute the daemon in place (same pid, every unit kept): after installing a new synsup",
    "top": "show every unit's state, memory and CPU, refreshed every 2 s",
    "completion": "print a shell completion script: source <(synsup completion bash)",
    "units": "print the running daemon's unit names, one a line (for completion)",
    "targets": "print the Prometheus scrape targets of the processes' metrics listeners",
    "routes": "print the reverse-proxy configuration (HAProxy or nginx) that routes each endpoint to its process",
    "cluster": "multi-host: abort the plan in progress, acknowledge a phase for a node gone for good, remove a node",
}
CONFIG_COMMANDS = ("check", "start", "run", "targets", "routes")


def _state_options(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """--state-dir, before or after the command (SUPPRESS: a command's own default never
    hides the value given before it)."""
    parser.add_argument("--state-dir", metavar="DIR", default=None if top else argparse.SUPPRESS,
                        help="control socket and records (default: $SYNSUP_STATE_DIR, /run/synsup "
                             "for root, else $XDG_RUNTIME_DIR/synsup)")


class SourceOptionClash(Exception):
    """A source's option and one of the CLI's own share a flag or a destination (a bug of the source)."""


class _PrintVersion(argparse.Action):
    """--version, the version looked up only when asked (importlib.metadata costs the daemon MBs)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"synsup {version()}")
        parser.exit()


def build_parser(source: Source) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synsup", description=source.description)
    parser.add_argument("--version", action=_PrintVersion, nargs=0, help="show the version and exit")
    _state_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        theirs = _source_options(source, p, name) if name in CONFIG_COMMANDS + ("upgrade",) else []
        ours = len(p._actions)
        try:
            if name not in ("check", "targets", "routes"):
                _state_options(p)
            _command_options(name, p)
        except argparse.ArgumentError as e:
            raise SourceOptionClash(f"the source's options clash with synsup's own in `{name}`: {e}") from None
        _refuse_shared_dests(name, theirs, p._actions[ours:])
    return parser


def _source_options(source: Source, p: argparse.ArgumentParser, name: str) -> list[argparse.Action]:
    """The actions the source adds to command `name` (first: its positionals come before ours)."""
    before = len(p._actions)
    try:
        source.add_arguments(p, name)
    except argparse.ArgumentError as e:
        raise SourceOptionClash(f"the source's options clash with synsup's own in `{name}`: {e}") from None
    return p._actions[before:]


def _refuse_shared_dests(name: str, theirs: list[argparse.Action], ours: list[argparse.Action]) -> None:
    """Two arguments writing one attribute: the later silently overwrites the earlier."""
    dests = {a.dest: a for a in ours}
    for action in theirs:
        if action.dest in dests:
            flag = "/".join(action.option_strings) or action.dest
            raise SourceOptionClash(f"the source's option {flag} writes {action.dest!r}, as synsup's own argument "
                                    f"of `{name}` does; rename the source's option (or its dest)")


def _command_options(name: str, p: argparse.ArgumentParser) -> None:
    if name == "check":
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        cluster.add_arguments(p)
    if name in ("start", "run"):
        p.add_argument("--log-dir", metavar="DIR", help="per-unit logs (default: logs/ in the state dir)")
        p.add_argument("--log-max-bytes", type=int, default=10 * 1024 * 1024, metavar="N",
                       help="rotate a unit log (and daemon.log) at this size (default 10 MiB; 0: never)")
        p.add_argument("--log-backups", type=int, default=3, metavar="N",
                       help="rotated files kept per log (default 3)")
        p.add_argument("--env-file", metavar="PATH",
                       help="KEY=VALUE lines (# comments, optional quotes) every unit gets, read at start, "
                            "as systemd's EnvironmentFile= (e.g. a file in /etc/default)")
        p.add_argument("--log-format", choices=("console", "json", "journal"),
                       help="daemon log format (default: console on a TTY, journal under journald, else json)")
        p.add_argument("--no-watch", action="store_true",
                       help="apply config changes only on `synsup reload` or SIGHUP (also SYNSUP_WATCH=0)")
        p.add_argument("--watch-settle", type=float, default=1.0, metavar="SECONDS",
                       help="a changed config file is read once it was unchanged this long (default 1)")
    if name in ("start", "run"):
        cluster.add_arguments(p)
        p.add_argument("--metrics", metavar="ADDR",
                       help="serve Prometheus /metrics and /targets (http_sd) at HOST:PORT or a UNIX socket path")
        p.add_argument("--on-failure", action="append", metavar="CMD",
                       help="shell command to run when a unit fails or a reload is rejected (repeatable; "
                            "default $SYNSUP_ON_FAILURE); gets SYNSUP_UNIT, SYNSUP_EVENT, SYNSUP_ERROR, SYNSUP_HOST")
        _proxy_options(p)
        p.add_argument("--force-python", action="store_true",
                       help="start on --python even though the last `synsup upgrade` installed newer code")
    if name == "targets":
        p.add_argument("--format", choices=FORMATS, default="file_sd",
                       help="file_sd_configs file (default) or the http_sd document; the same JSON")
    if name == "routes":
        _routes_options(p)
    if name == "top":
        p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="refresh period (default 2)")
    if name == "start":
        p.add_argument("--foreground", action="store_true", help="run the daemon in this process (for systemd)")
        p.add_argument("--replace", action="store_true",
                       help="first stop processes left behind by a synsup daemon that is gone, instead of "
                       "adopting them, and start everything afresh")
    if name == "status":
        p.add_argument("--json", action="store_true", help="print the status as JSON")
        cluster.status_arguments(p)
        p.add_argument("units", nargs="*", metavar="UNIT")
    if name == "restart":
        p.add_argument("units", nargs="*", metavar="UNIT")
        p.add_argument("--rolling", action="store_true", help="one unit at a time in dependency order, each "
                       "ready before the next (without UNITs: every unit but Redis and those stopped by the admin)")
    if name == "stop":
        p.add_argument("units", nargs="*", metavar="UNIT", help="only these units; they stay stopped until "
                       "`synsup start UNIT`")
        p.add_argument("--force", action="store_true", help="stop a unit even though others depend on it")
        p.add_argument("--local", action="store_true", help="--cluster: stop this node only (its units and its "
                       "daemon), as systemd's ExecStop does; without it `stop` stops every node of the cluster")
    if name == "start":
        p.add_argument("units", nargs="*", metavar="UNIT", help="with the daemon running: start these units "
                       "(stopped by `synsup stop UNIT`)")
    if name in ("restart", "stop", "pause", "resume"):  # start has --node already (this node, or the one to act on)
        p.add_argument("--node", metavar="NAME", help="--cluster: only on this node (default: the node that "
                       "runs each unit named, or every node)")
    if name == "upgrade":
        p.add_argument("--node", metavar="NAME", help="--cluster: upgrade this node only (default: every node, "
                       "one after the other, main's node first)")
    if name == "completion":
        p.add_argument("shell", choices=("bash", "zsh"))
    if name == "cluster":
        cluster.admin_arguments(p)
    if name == "reload":
        p.add_argument("--dry-run", action="store_true", help="print the plan the files would produce; change nothing")
    if name == "upgrade":
        p.add_argument("--dry-run", action="store_true", help="print the plan (versions, migration, restart "
                       "order); change nothing")
    if name == "reexec":
        p.add_argument("--trial-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="the new version is tried first (`--version`); refused if it takes longer (default 60)")
    if name in ("restart", "reload", "upgrade"):
        p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                       help="give up waiting after this long (default 600); the operation goes on")
    if name == "logs":
        p.add_argument("-f", "--follow", action="store_true", help="keep printing as the log grows")
        p.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="lines to show (default 50)")
        p.add_argument("unit", metavar="UNIT", nargs="?", help="one unit (default: all, merged, each line "
                       "prefixed with its unit)")
        p.add_argument("--log-dir", metavar="DIR", help="where the unit logs are (default: where the last "
                       "daemon wrote them)")


def _proxy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proxy", metavar="KIND:PATH", help="keep a reverse proxy in step: haproxy:ADMIN_SOCKET "
                   "(drained restarts) or nginx:ROUTES_FILE (written, nginx reloaded on a topology change)")
    p.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="HAProxy: how long a stop waits for a drained server's requests (default 10)")
    p.add_argument("--proxy-listen", metavar="HOST:PORT", default="127.0.0.1:8080",
                   help="nginx: where the routes file's server listens (default 127.0.0.1:8080)")
    p.add_argument("--proxy-reload", metavar="CMD", default="nginx -s reload",
                   help="nginx: the command that reloads it (default: nginx -s reload)")


def _routes_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("haproxy", "nginx"), default="haproxy",
                   help="a complete HAProxy configuration (default), or an nginx file to include in http {}")
    p.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:8080",
                   help="where the proxy takes requests (default 127.0.0.1:8080)")
    p.add_argument("--admin-socket", metavar="PATH|HOST:PORT", default="127.0.0.1:9999",
                   help="HAProxy's runtime API: a UNIX socket path or HOST:PORT (default 127.0.0.1:9999)")
    p.add_argument("--diff", metavar="PREVIOUS", help="say which routes changed since PREVIOUS, a file "
                   "`synsup routes` printed (e.g. the one the proxy runs); print nothing else")


Handler = Callable[[argparse.Namespace, Source, list[str]], int]


def _completion(args: argparse.Namespace, source: Source, argv: list[str]) -> int:
    print(completion.script(build_parser(source), args.shell), end="")
    return 0


def _routes(args: argparse.Namespace, source: Source, argv: list[str]) -> int:
    routes = source.routes(args)
    for finding in routes.errors:
        print(finding.format(), file=sys.stderr)
    if routes.errors:
        return 1
    print(routes.text, end="")
    return 0


# command -> what runs it (args, source, argv): every route in one table
HANDLERS: dict[str, Handler] = {
    "check": lambda args, source, argv: (cluster.check(args, source) if args.cluster
                                         else commands.check(source.load(args), args.json)),
    "start": start.start,
    "run": start.start,
    "targets": lambda args, source, argv: commands.targets(source.load(args)),
    "upgrade": lambda args, source, argv: upgrade.upgrade(args),
    "top": lambda args, source, argv: top.top(args),
    "completion": _completion,
    "stop": lambda args, source, argv: commands.stop(args),
    "status": lambda args, source, argv: cluster.status(args) if args.cluster else commands.status(args),
    "restart": lambda args, source, argv: commands.restart(args),
    "reload": lambda args, source, argv: commands.reload(args),
    "logs": lambda args, source, argv: commands.logs(args),
    "reopen-logs": lambda args, source, argv: commands.reopen_logs(args),
    "pause": lambda args, source, argv: commands.pause(args),
    "resume": lambda args, source, argv: commands.resume(args),
    "units": lambda args, source, argv: commands.units(args),
    "reexec": lambda args, source, argv: commands.reexec(args),
    "routes": _routes,
    "cluster": lambda args, source, argv: cluster.admin(args),
}


def dispatch(args: argparse.Namespace, source: Source, argv: list[str]) -> int:
    return HANDLERS[args.command](args, source, argv)


def main(source: Source, argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(source)
    except SourceOptionClash as e:
        print(f"synsup: error: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    del parser  # 150 KB: not kept for the life of a daemon (start, run)
    try:
        return dispatch(args, source, argv)
    except SynsupError as e:
        print(e.line(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # our stdout closed early (`synsup status | head`): not an error
        return 0
