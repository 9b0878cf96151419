"""A small fake Synapse for fast tests: `python -m synapse.app.homeserver` / `generic_worker`."""

import os

__version__ = os.environ.get("SYNAPSE_FAKE_VERSION", "1.163.0")
