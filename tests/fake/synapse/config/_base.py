"""Stand-in for synapse.config._base: what synsup's config validation imports."""


class ConfigError(Exception):
    def __init__(self, msg, path=None):
        super().__init__(msg)
        self.msg, self.path = msg, path


def format_config_error(e):
    yield "Error in configuration"
    if e.path:
        yield f" at '{'.'.join(e.path)}'"
    yield f":\n  {e.msg}"
