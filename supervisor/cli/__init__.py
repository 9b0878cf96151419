"""The `synsup` command: parsing, every client command and what it prints."""
