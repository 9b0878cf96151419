"""Stand-in for synapse.util.check_dependencies: the exception Synapse's config raises when an
optional feature's packages are missing (args[0]: the missing distributions)."""


class DependencyException(Exception):
    pass
