"""The CLI starts, shows help for every command, and reports bad commands without a traceback."""

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsv4ctl", *args], capture_output=True, text=True)


def test_root_help_lists_commands():
    res = run("--help")
    assert res.returncode == 0, res.stderr
    assert "dsv4ctl" in res.stdout


def test_unknown_command_is_a_usage_error():
    res = run("no-such-command")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
