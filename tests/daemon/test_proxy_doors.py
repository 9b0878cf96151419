"""The proxies --proxy names: the option parsed, and nginx's routes file written atomically with
a backup, nginx reloaded only when the file changed, put back when the reload fails."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from synsup.supervisor.daemon.front_door import ProxyError, ProxyState
from synsup.supervisor.daemon.proxy_doors import NginxDoor, parse_proxy
from synsup.supervisor.errors import SynsupError
from synsup.supervisor.source import ProxyLayout, ProxyServer

SERVERS = [ProxyServer("main", "main", "127.0.0.1:8008"), ProxyServer("client", "generic1", "127.0.0.1:8081")]


def reload_counting(tmp_path, code: int = 0) -> str:
    """A reload command that appends a line to `reloads` and exits with `code`."""
    return f"sh -c 'echo reload >> {tmp_path}/reloads; echo nginx: [emerg] bad >&2; exit {code}'"


def reloads(tmp_path) -> int:
    try:
        return len((tmp_path / "reloads").read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("value, parsed", [("haproxy:/run/haproxy/admin.sock", ("haproxy", "/run/haproxy/admin.sock")),
                                           ("haproxy:127.0.0.1:9999", ("haproxy", "127.0.0.1:9999")),
                                           ("nginx:/etc/nginx/conf.d/s.conf", ("nginx", "/etc/nginx/conf.d/s.conf"))])
def test_proxy_option_is_kind_and_target(value, parsed):
    assert parse_proxy(value) == parsed


@pytest.mark.parametrize("value", ["traefik:/x", "haproxy", "nginx:"])
def test_bad_proxy_option_is_one_line_naming_the_forms(value):
    with pytest.raises(SynsupError, match="expected haproxy:/path/to/admin.sock or nginx:"):
        parse_proxy(value)


def test_nginx_file_written_with_backup_and_nginx_reloaded_only_on_a_change(tmp_path):
    path = tmp_path / "synapse-routes.conf"
    door = NginxDoor(str(path), reload_counting(tmp_path))

    async def main():
        await door.check(ProxyLayout(SERVERS, "first\n"))
        await door.apply(ProxyLayout(SERVERS, "first\n"))
        assert path.read_text() == "first\n" and not (tmp_path / "synapse-routes.conf.bak").exists()
        await door.apply(ProxyLayout(SERVERS, "first\n"))  # unchanged: no reload
        await door.route(ProxyLayout(SERVERS, "first\n"))  # the file holds the routes: nothing more
        assert reloads(tmp_path) == 1
        await door.apply(ProxyLayout(SERVERS[:1], "second\n"))
        assert reloads(tmp_path) == 2 and path.read_text() == "second\n"
        assert (tmp_path / "synapse-routes.conf.bak").read_text() == "first\n"

    asyncio.run(main())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # nginx's workers read it
    assert sorted(os.listdir(tmp_path)) == ["reloads", "synapse-routes.conf", "synapse-routes.conf.bak"]
    assert door.serves("main") and not door.serves("generic1") and not door.drains


def test_nginx_reload_failing_puts_the_previous_file_back(tmp_path):
    path = tmp_path / "synapse-routes.conf"
    path.write_text("running\n")

    async def main():
        with pytest.raises(ProxyError, match=r"failed \(nginx: \[emerg\] bad\).*back as it was"):
            await NginxDoor(str(path), reload_counting(tmp_path, code=1)).apply(ProxyLayout(SERVERS, "broken\n"))

    asyncio.run(main())
    assert path.read_text() == "running\n"


def test_nginx_without_its_directory_is_one_line_with_the_fix(tmp_path):
    door = NginxDoor(str(tmp_path / "missing" / "routes.conf"))
    with pytest.raises(ProxyError, match="its directory does not exist; create it"):
        asyncio.run(door.check(ProxyLayout(SERVERS, "x")))


def test_nginx_states_are_nothing_to_tell():
    door = NginxDoor("/nonexistent/routes.conf")
    asyncio.run(door.set_state("main", ProxyState.MAINT))  # no runtime API: nothing happens, nothing fails
    assert asyncio.run(door.in_flight("main")) == 0
