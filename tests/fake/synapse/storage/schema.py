"""Stand-in for synapse.storage.schema: the code's schema versions, from the environment
(SYNAPSE_FAKE_SCHEMA, SYNAPSE_FAKE_COMPAT), so a test can play an old and a new release."""

import os

SCHEMA_VERSION = int(os.environ.get("SYNAPSE_FAKE_SCHEMA", "94"))
SCHEMA_COMPAT_VERSION = int(os.environ.get("SYNAPSE_FAKE_COMPAT", "84"))
