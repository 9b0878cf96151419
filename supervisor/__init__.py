"""The engine: runs generic unit specs in dependency order and keeps them alive."""
