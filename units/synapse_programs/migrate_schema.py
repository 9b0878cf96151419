"""Run by synsup under the new Synapse's python, by path, with main's config args: migrates the
database schema as main would at start (Synapse's update_synapse_database does the same from
one config file; this loads main's config files exactly as main does). Called through
units/schema.py's migration_command."""
# mypy: disable-error-code="no-untyped-def, no-untyped-call, import-not-found, import-untyped"
import logging
import sys

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
from synapse._scripts.update_synapse_database import MockHomeserver  # noqa: E402 (logging first)
from synapse.config.homeserver import HomeServerConfig  # noqa: E402 (logging first)

config = HomeServerConfig.load_config("Synapse", sys.argv[1:])
hs = MockHomeserver(config)
hs.setup()
hs.get_storage_controllers()
print("schema is up to date")
