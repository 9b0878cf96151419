"""Stand-in for synapse._scripts.update_synapse_database: MockHomeserver(config).setup()
migrates the fake database; $SYNAPSE_FAKE_CONTROL/migrate.json {"fail": true} makes it fail,
{"delay": S} makes it take S seconds."""

import json
import os
import sys
import time

from synapse.storage import prepare_database


class MockHomeserver:
    def __init__(self, config):
        self.config = config

    def setup(self):
        control = os.environ.get("SYNAPSE_FAKE_CONTROL", "")
        try:
            with open(os.path.join(control, "migrate.json")) as f:
                behaviour = json.load(f)
        except (FileNotFoundError, ValueError):
            behaviour = {}
        time.sleep(behaviour.get("delay", 0))
        if behaviour.get("fail"):
            print("fake migration failing as asked", file=sys.stderr)
            sys.exit(1)
        problem = prepare_database.refusal(is_main=True)
        if problem:
            sys.exit(problem)

    def get_storage_controllers(self):
        return None
