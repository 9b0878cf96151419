"""Config files are parsed by libyaml where PyYAML has it (yamldoc._FastLoader): the same values
and key lines as PyYAML's own parser, and a refused file says what PyYAML's parser says."""

from __future__ import annotations

import glob
import os
import sys

import pytest
import yaml

from synsup.units import yamldoc

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "demo")


def parsed(data: bytes, loader) -> object:
    saved = yamldoc._FastLoader
    yamldoc._FastLoader = loader
    try:
        return yamldoc.parse_yaml("f.yaml", data)
    finally:
        yamldoc._FastLoader = saved


def lines_of(node: object) -> object:
    if isinstance(node, dict):
        return {k: (node.line_of(k), lines_of(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [(node.line_of(i), lines_of(v)) for i, v in enumerate(node)]
    return node


def test_libyaml_is_used_where_pyyaml_has_it():
    assert yamldoc._FastLoader is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.mark.parametrize("text", [
    b"a: 1\nb: [x, {c: 2}]\nd:\n  - e\n  - f: 3\n",
    b"base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n",
    b"when: 2024-01-01\nport: 0o17\nflag: yes\nnull_: ~\n",
    "name: caf\u00e9\r\nother: 1\r\n".encode(),
])
def test_values_and_key_lines_are_pyyamls(text):
    ours, theirs = parsed(text, yamldoc._FastLoader), parsed(text, yaml.SafeLoader)
    assert ours == theirs and lines_of(ours) == lines_of(theirs)


def test_the_demos_files_read_the_same_with_either_parser(tmp_path):
    sys.path.insert(0, DEMO)
    try:
        import deployment
    finally:
        sys.path.remove(DEMO)
    deployment.write(str(tmp_path), sys.executable, {"user": "synapse", "database": "synapse"})
    files = glob.glob(os.path.join(tmp_path, "**", "*.yaml"), recursive=True)
    assert len(files) >= 7, files
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        assert lines_of(parsed(data, yamldoc._FastLoader)) == lines_of(parsed(data, yaml.SafeLoader)), path


@pytest.mark.parametrize("text, line, words", [
    (b"a: &x 1\nb: *y\n", 2, "found undefined alias 'y'"),
    (b"a: 1\n\tb: 2\n", 2, "found character '\\t' that cannot start any token"),
    (b"a: [1, 2\n", 2, "expected ',' or ']', but got '<stream end>'"),
    (b"a: 1\n- b\n", 2, "expected <block end>, but found '-'"),
])
def test_a_refused_file_says_what_pyyamls_parser_says(text, line, words):
    with pytest.raises(yamldoc.ConfigFileError) as refused:
        yamldoc.parse_yaml("f.yaml", text)
    assert refused.value.line == line and refused.value.message == f"not valid YAML: {words}"
