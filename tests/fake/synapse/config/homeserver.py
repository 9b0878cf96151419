"""Stand-in for synapse.config.homeserver: reads the -c files like Synapse and rejects a few
values the way Synapse 1.163 does, with its exceptions and messages (`event_cache_size: lots`
-> ValueError from int(), a non-mapping `caches` -> ConfigError with its path, a listener type
-> attrs' ValueError tuple, an unknown stream_writers key -> TypeError, a writer missing from
instance_map -> ConfigError, `url_preview_enabled` without beautifulsoup4 -> DependencyException);
to play a newer release, also the keys named in $SYNAPSE_FAKE_REJECT_KEYS."""

import argparse
import os
import types

from synapse.app._fake import load_config
from synapse.config._base import ConfigError
from synapse.util.check_dependencies import DependencyException

LISTENER_TYPES = {"http", "manhole", "metrics"}
STREAMS = ("events typing to_device account_data receipts presence push_rules device_lists "
           "thread_subscriptions quarantined_media_changes").split()


def _size(value):
    if type(value) is int:
        return value
    suffixes = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    if isinstance(value, str) and value[-1:] in suffixes:
        return int(value[:-1]) * suffixes[value[-1]]
    return int(value)


def _listeners(listeners):
    for listener in listeners:
        kind = listener.get("type")
        if kind not in LISTENER_TYPES:
            raise ValueError(f"'type' must be in {LISTENER_TYPES!r} (got {kind!r})",
                             "Attribute(name='type', default=NOTHING, validator=<in_ validator>)",
                             LISTENER_TYPES, kind)


def _stream_writers(writers, instance_map):
    unknown = [k for k in writers if k not in STREAMS]
    if unknown:
        raise TypeError(f"WriterLocations.__init__() got an unexpected keyword argument {unknown[0]!r}")
    known = {"master" if name == "main" else name for name in instance_map}
    for stream, names in writers.items():
        for name in [names] if isinstance(names, str) else names:
            if name != "master" and name not in known:
                raise ConfigError(f"Instance {name!r} is configured to write {stream} but does not appear in "
                                  "`instance_map` config.")


class HomeServerConfig:
    def __init__(self, config):
        _size(config.get("event_cache_size", "10K"))
        if not isinstance(config.get("caches", {}), dict):
            raise ConfigError("caches must be a mapping", ("caches",))
        _listeners(config.get("listeners") or [])
        if config.get("worker_app"):
            _listeners(config.get("worker_listeners") or [])
        _stream_writers(config.get("stream_writers") or {}, config.get("instance_map") or {})
        if config.get("url_preview_enabled"):
            raise DependencyException(["beautifulsoup4"])
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
