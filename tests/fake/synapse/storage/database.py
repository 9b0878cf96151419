"""Stand-in for synapse.storage.database: a "connection" to the fake database, which is
$SYNAPSE_FAKE_CONTROL/schema.json ({"current_version", "compat_version"}; absent: empty)."""


class FakeConnection:
    autocommit = False

    def cursor(self, txn_name=None):
        return None

    def rollback(self):
        pass

    def close(self):
        pass


def make_conn(*, db_config, engine, default_txn_name, server_name):
    return FakeConnection()
