"""YAML files read with the line of every key, so findings can point at it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml


class ConfigFileError(Exception):
    """A config file that cannot be used at all; carries file and line."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.message = message


class YamlMap(dict):
    """A mapping that remembers its file and the line of each key."""

    file: str = ""
    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int | None:
        return self.lines.get(key, self.line)


class YamlList(list):
    """A sequence that remembers its file and the line of each item."""

    file: str = ""
    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lines: list[int] = []

    def line_of(self, index: int) -> int | None:
        return self.lines[index] if index < len(self.lines) else self.line


@dataclass(frozen=True)
class Where:
    """A place in a config file."""

    file: str
    line: int | None = None


def where(container: Any, key: Any = None) -> Where:
    """The place of `key` in `container` (or of the container itself)."""
    file = getattr(container, "file", "") or ""
    if key is not None and hasattr(container, "line_of"):
        return Where(file, container.line_of(key))
    return Where(file, getattr(container, "line", None))


# libyaml's parser where PyYAML has it: the same nodes and lines in a fraction of the time (ten
# Synapse config files, each command's start); a file it refuses is read again by PyYAML's own
# parser, whose errors say more ("found undefined alias 'y'", not "found undefined alias")
_FastLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _make_loader(file: str, base: type[yaml.SafeLoader]) -> type[yaml.SafeLoader]:
    class Loader(base):  # type: ignore[valid-type,misc]
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> YamlMap:
        loader.flatten_mapping(node)
        result = YamlMap()
        result.file, result.line = file, node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConfigFileError(
                    file, key_node.start_mark.line + 1, "a mapping key must be a plain value"
                ) from None
            result[key] = loader.construct_object(value_node, deep=True)
            result.lines[key] = key_node.start_mark.line + 1
        return result

    def construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> YamlList:
        result = YamlList(loader.construct_object(child, deep=True) for child in node.value)
        result.file, result.line = file, node.start_mark.line + 1
        result.lines = [child.start_mark.line + 1 for child in node.value]
        return result

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    return Loader


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigFileError(path, None, "no such file; check the path") from None
    except IsADirectoryError:
        raise ConfigFileError(path, None, "is a directory, expected a YAML file") from None
    except PermissionError:
        raise ConfigFileError(
            path, None, "permission denied; make it readable by this user"
        ) from None
    except OSError as e:
        raise ConfigFileError(path, None, f"cannot read: {e.strerror}") from None


def parse_yaml(path: str, data: bytes) -> Any:
    """Parse YAML text; a syntax error becomes a ConfigFileError with its line."""
    try:
        try:
            return yaml.load(data, Loader=_make_loader(path, _FastLoader))
        except yaml.YAMLError:  # said as PyYAML's own parser says it (libyaml's words say less)
            return yaml.load(data, Loader=_make_loader(path, yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigFileError(path, line, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigFileError(path, None, f"not valid YAML: {_first_line(e)}") from None
    except (ValueError, OverflowError, RecursionError) as e:
        raise ConfigFileError(path, None, f"not valid YAML: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def load_mapping(path: str) -> YamlMap:
    """Read one config file, which must be a non-empty YAML mapping."""
    document = parse_yaml(path, _read_bytes(path))
    if document is None:
        raise ConfigFileError(path, None, "the file is empty; expected a YAML mapping of options")
    if not isinstance(document, YamlMap):
        kind = type(document).__name__ if not isinstance(document, list) else "list"
        raise ConfigFileError(
            path, 1, f"expected a YAML mapping of options at the top level, found a {kind}"
        )
    if not document:
        raise ConfigFileError(path, 1, "the mapping is empty; expected config options")
    return document


def yaml_files_in(directory: str) -> list[str]:
    """The `*.yaml` files of a directory, in sorted order."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        raise ConfigFileError(directory, None, "no such directory; check the path") from None
    except NotADirectoryError:
        raise ConfigFileError(directory, None, "is not a directory") from None
    except PermissionError:
        raise ConfigFileError(
            directory, None, "permission denied; make it readable by this user"
        ) from None
    except OSError as e:
        raise ConfigFileError(directory, None, f"cannot list: {e.strerror}") from None
    return [os.path.join(directory, n) for n in names if n.endswith(".yaml")]
