"""The command line: help everywhere, user errors as one clear line."""

import subprocess
import sys

import pytest

from twiki.cli import COMMANDS, build_parser, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"twiki {command}" in out
    for action in build_parser()._subparsers._group_actions[0].choices[command]._actions:
        assert action.help, f"option {action.option_strings} of {command} has no help"


@pytest.mark.parametrize("month, says", [
    ("2022-13", "month '2022-13' does not exist: MM runs from 01 to 12 (for example 2022-01)"),
    ("2016-00", "month '2016-00' does not exist: MM runs from 01 to 12 (for example 2022-01)"),
    ("2022-1", "month '2022-1' is not of the form YYYY-MM (for example 2022-01)"),
    ("January", "month 'January' is not of the form YYYY-MM (for example 2022-01)"),
])
def test_bad_month_is_one_line_and_exit_2(capsys, tmp_path, month, says):
    code = main(["extract", "--month", month, "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"twiki: error: {says}"]


def test_extract_before_download_says_what_to_do(capsys, tmp_path):
    code = main(["extract", "--month", "2016-05", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "twiki download --month 2016-05" in err and "Traceback" not in err


def test_python_dash_m_twiki_works():
    out = subprocess.run([sys.executable, "-m", "twiki", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "snapshot" in out and "extract" in out
