"""Red team: a symlinked config file (Ansible/Nix-style, or a Kubernetes ConfigMap's ..data
link) was never reloaded: the watcher compared event paths with the link's path, and an edit
happens at the target."""

from __future__ import annotations

import asyncio
import os

from synsup.supervisor.daemon.config_watch import config_changes


def first_batch(paths: list[str], change) -> list[str]:
    async def main() -> list[str]:
        changes = config_changes(paths, settle=0.2)
        batch = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.5)  # the watcher is up
        change()
        try:
            async with asyncio.timeout(10):
                return await batch
        finally:
            await changes.aclose()
    return asyncio.run(main())


def test_an_edit_at_the_target_of_a_symlinked_config_is_seen(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "etc").mkdir()
    target = tmp_path / "real" / "hs.yaml"
    target.write_text("a: 1\n")
    link = tmp_path / "etc" / "homeserver.yaml"
    link.symlink_to(target)
    assert first_batch([str(link)], lambda: target.write_text("a: 2\n"))


def test_a_configmap_style_data_swap_is_seen(tmp_path):
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "homeserver.yaml").write_text(f"version: {version}\n")
    (tmp_path / "..data").symlink_to("v1")
    config = tmp_path / "homeserver.yaml"
    config.symlink_to(os.path.join("..data", "homeserver.yaml"))

    def swap() -> None:  # what the kubelet does: a new link, renamed over ..data
        (tmp_path / "..data_tmp").symlink_to("v2")
        os.rename(tmp_path / "..data_tmp", tmp_path / "..data")
    assert first_batch([str(config)], swap) == [str(config)]
