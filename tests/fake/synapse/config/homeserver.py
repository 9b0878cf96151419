"""Stand-in for synapse.config.homeserver: reads the -c files like Synapse and rejects a few
values the way Synapse does (`event_cache_size: lots` -> ValueError from int(), a non-mapping
`caches` -> ConfigError with its path); to play a newer release, also the keys named in
$SYNAPSE_FAKE_REJECT_KEYS."""

import argparse
import os
import types

from synapse.app._fake import load_config
from synapse.config._base import ConfigError


def _size(value):
    if type(value) is int:
        return value
    suffixes = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    if isinstance(value, str) and value[-1:] in suffixes:
        return int(value[:-1]) * suffixes[value[-1]]
    return int(value)


class HomeServerConfig:
    def __init__(self, config):
        _size(config.get("event_cache_size", "10K"))
        if not isinstance(config.get("caches", {}), dict):
            raise ConfigError("caches must be a mapping", ("caches",))
        for key in filter(None, os.environ.get("SYNAPSE_FAKE_REJECT_KEYS", "").split(",")):
            if key in config:
                raise ConfigError(f"`{key}` is no longer supported", (key,))
        self.worker = types.SimpleNamespace(worker_app=config.get("worker_app"))
        self.server = types.SimpleNamespace(server_name=config.get("server_name"))
        db = types.SimpleNamespace(config=config.get("database") or {}, databases=["main", "state"])
        self.database = types.SimpleNamespace(databases=[db])

    @classmethod
    def load_config(cls, description, argv):
        parser = argparse.ArgumentParser(description)
        parser.add_argument("-c", "--config-path", action="append", default=[])
        return cls(load_config(parser.parse_args(argv).config_path))

    load_or_generate_config = load_config
