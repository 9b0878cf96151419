"""A source's options and the CLI's own may not collide: the parser refuses it at start-up."""

from __future__ import annotations

import argparse

import pytest

from synsup.supervisor.cli.main import SourceOptionClash, build_parser, main
from synsup.supervisor.source import Loaded


class OptionSource:
    """A source adding one option (to every config command)."""

    module = "x"
    description = "a source with one option"

    def __init__(self, *flags: str, **kwargs) -> None:
        self.flags, self.kwargs = flags, kwargs

    def add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        parser.add_argument(*self.flags, **self.kwargs)

    def load(self, args: argparse.Namespace) -> Loaded:
        return Loaded([])

    def plan(self, old: Loaded, new: Loaded) -> list:
        return []


def test_a_source_option_with_the_dest_of_a_cli_argument_is_refused():
    """contrib/bench/daemon.py's `--units N` landed in `start`'s own UNIT... list (a TypeError later)."""
    with pytest.raises(SourceOptionClash, match=r"--units.*'units'.*start"):
        build_parser(OptionSource("--units", type=int, default=5))


def test_a_source_option_with_the_flag_of_a_cli_option_is_refused():
    with pytest.raises(SourceOptionClash, match=r"--log-dir"):
        build_parser(OptionSource("--log-dir"))


def test_the_clash_is_one_line_at_start_up(capsys):
    assert main(OptionSource("--units", type=int), ["status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synsup: error: ") and "--units" in err and len(err.strip().splitlines()) == 1


def test_options_that_do_not_clash_parse():
    args = build_parser(OptionSource("--unit-count", type=int, default=5)).parse_args(["start", "--unit-count", "3"])
    assert args.unit_count == 3 and args.units == []
