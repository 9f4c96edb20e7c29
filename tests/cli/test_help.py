"""``--help`` of the group and of every command and subcommand: exit 0 and the usage line.

The commands are listed from the group itself, so a command added later is covered too; the
expected set below fails loudly when one disappears.
"""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from streams.cli import cli, main

EXPECTED = {
    "backtest", "broker", "demo", "detect", "gate", "gate wait", "ingest", "override",
    "rollout", "rollout end", "rollout share", "rollout start", "rollout status", "simulate", "worker",
}


def _paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += _paths(command, (*prefix, name))
    return out


PATHS = _paths(cli)


def test_every_command_is_listed_once() -> None:
    names = [" ".join(p) for p in PATHS]
    assert sorted(names) == sorted(EXPECTED)
    assert len(names) == len(set(names))


def test_the_group_help() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="rumgate")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: rumgate [OPTIONS] COMMAND [ARGS]...\n")
    for name in {p[0] for p in PATHS}:
        assert f"\n  {name} " in result.output
    assert result.output.count("\n  backtest ") == 1  # listed once, also after it was imported
    assert "0 promote   1 rollback   2 hold / no decision   3 error" in result.output


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) for p in PATHS])
def test_help_of(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="rumgate")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f"Usage: rumgate {' '.join(path)} [OPTIONS]"), first


def test_short_help_flag_everywhere() -> None:
    """``-h`` as well, in a fresh interpreter: click caches a command's help option on the
    command, so a test that invoked the command alone (without the group's ``-h``) would
    hide it here."""
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from streams.cli import cli\n"
        f"for path in {[list(p) for p in PATHS]!r}:\n"
        "    r = CliRunner().invoke(cli, [*path, '-h'], prog_name='rumgate')\n"
        "    first = r.output.splitlines()[0] if r.output else ''\n"
        "    print(r.exit_code, first)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(PATHS)
    for path, line in zip(PATHS, lines):
        assert line.startswith(f"0 Usage: rumgate {' '.join(path)} [OPTIONS]"), line


def test_main_help_exits_0(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.argv", ["rumgate", "gate", "wait", "--help"])
    try:
        main()  # click may return from --help rather than raise Exit(0)
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert capsys.readouterr().out.startswith("Usage: rumgate gate wait [OPTIONS] ROLLOUT_ID")


def test_a_usage_error_exits_3(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.argv", ["rumgate", "rollout", "status", "--no-such-flag"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 3
    assert "No such option: --no-such-flag" in capsys.readouterr().err


def test_override_actions_are_spelled_as_on_the_wire() -> None:
    result = CliRunner().invoke(cli, ["override", "--help"], prog_name="rumgate")
    assert "--action [promote|hold|rollback]" in result.output
