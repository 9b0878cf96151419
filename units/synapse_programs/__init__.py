"""Programs synsup runs with a deployment's own Python (which need not have synsup installed),
by path: kept as files so that linters and type checkers read them."""
