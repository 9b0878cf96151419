"""Multi-host (`--cluster FILE`): the store client (etcd v3 through its JSON gateway) and what a
daemon keeps there. Imported only when --cluster is given: a single-host synsup never loads it."""
