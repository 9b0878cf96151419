"""The engine: runs generic unit specs in dependency order and keeps them alive."""

__version__ = "0.1.0"
