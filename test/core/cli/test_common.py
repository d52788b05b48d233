"""The shared CLI plumbing: one `error:` line and status 2 for argparse errors, bad values and
library errors whose text spans several lines."""
import argparse

import pytest

from ecmnet_core.cli.common import (ArgumentParser, UsageError, float_range, friendly_main, int_range,
                                    parse_device, parse_max_pixels)


def _parser():
    p = ArgumentParser(prog="tool")
    p.add_argument("--n", type=int_range(0))
    p.add_argument("--x", type=float_range(0, 1))
    p.add_argument("--rate", type=float_range(0, lo_open=True))
    p.add_argument("--device", type=parse_device)
    p.add_argument("--max-pixels", type=parse_max_pixels)
    p.add_argument("--mode", choices=["a", "b"])
    p.add_argument("--req", required=True)
    return p


@pytest.mark.parametrize("argv,match", [
    (["--n", "-3"], "argument --n: must be >= 0, got -3"),
    (["--n", "1.5"], "argument --n: expected an integer, got '1.5'"),
    (["--x", "7"], "argument --x: must be in [0, 1], got 7"),
    (["--x", "inf"], "argument --x: must be a finite number"),
    (["--rate", "0"], "argument --rate: must be > 0, got 0"),
    (["--device", "banana"], "argument --device: device must be auto, cpu, cuda or cuda:N"),
    (["--max-pixels", "-5"], "argument --max-pixels: must be >= 0"),
    (["--mode", "c"], "argument --mode: invalid choice: 'c'"),
    ([], "the following arguments are required: --req"),
    (["--req", "r", "extra"], "unrecognized arguments: extra"),
])
def test_argparse_errors_are_one_line(argv, match, capsys):
    @friendly_main
    def main(argv):
        _parser().parse_args(argv)
        return 0
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"error: {match}" + captured.err.split(match, 1)[1]
    assert captured.err.count("\n") == 1 and captured.err.rstrip().endswith("(see tool --help)")


def test_parse_error_raises_usage_error_outside_friendly_main():
    with pytest.raises(UsageError, match="argument --n"):
        _parser().parse_args(["--req", "r", "--n", "x"])


def test_good_values_parse():
    a = _parser().parse_args(["--req", "r", "--n", "0", "--x", "1", "--rate", "0.5", "--device", "cuda:1",
                              "--max-pixels", "4096x2048"])
    assert (a.n, a.x, a.rate, a.device, a.max_pixels) == (0, 1.0, 0.5, "cuda:1", 4096 * 2048)
    assert parse_max_pixels("0") == 0 and parse_max_pixels("1000") == 1000


def test_help_still_prints_usage_and_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--help"])
    assert info.value.code == 0 and "usage: tool" in capsys.readouterr().out


@pytest.mark.parametrize("exc,expected", [
    (ValueError("first line\n\n  second line  "), "error: first line second line"),
    (PermissionError(13, "Permission denied", "/root/x"), "error: Permission denied: /root/x"),
    (NotADirectoryError(20, "Not a directory", "/etc/passwd/x"), "error: Not a directory: /etc/passwd/x"),
    (EOFError(), None),
])
def test_friendly_main_turns_library_errors_into_one_line(exc, expected, capsys):
    @friendly_main
    def main():
        raise exc
    if expected is None:                 # not a user error: a real bug keeps its traceback
        with pytest.raises(type(exc)):
            main()
        return
    assert main() == 2
    assert capsys.readouterr().err == expected + "\n"


def test_type_helpers_reject_at_parse_time():
    with pytest.raises(argparse.ArgumentTypeError):
        int_range(1, 3)("4")
    with pytest.raises(argparse.ArgumentTypeError):
        float_range(0, 1, hi_open=True)("1")
