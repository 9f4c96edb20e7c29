"""The ``rumgate`` command line: the click group here, one module per command.

- :mod:`~streams.cli.backtest`  ``rumgate backtest`` (files and topics)
- :mod:`~streams.cli.simulate`  ``rumgate simulate``
- :mod:`~streams.cli.demo`      ``rumgate demo``
- :mod:`~streams.cli.live`      ``rumgate broker``, ``worker`` and ``rollout start|status|end``
- :mod:`~streams.cli.gate`      ``rumgate gate wait`` and ``rumgate override``
- :mod:`~streams.cli.ingest`    ``rumgate ingest``, the beacon endpoint alone
- :mod:`~streams.cli.detect`    ``rumgate detect``, anomaly scores for a CSV
- :mod:`~streams.cli.common`    what the commands share: options, exit codes, verdict rendering

Commands are imported only when they run, so ``rumgate ingest`` loads no Faust or river.
It may import every :mod:`streams` package and :mod:`detectors`; outside it, only
``python -m streams`` (:mod:`streams.__main__`) imports it.

Exit codes are shared by every command that ends with a verdict, so a CI step can act
on them: 0 promote, 1 rollback, 2 hold or no decision, 3 error (bad input, bad usage).
"""

from __future__ import annotations

import importlib
import sys

import click

from streams.cli.common import EXIT_ERROR

__all__ = ["cli", "main"]


class _LazyGroup(click.Group):
    """A group whose commands in other modules are imported only when they run (or ``--help``).

    ``rumgate ingest`` then does not import river, scipy or Faust: its process idles in about
    half the memory, with a fraction of the objects. The pattern is click's own
    ("lazily loading subcommands" in its documentation).
    """

    def __init__(self, *args, lazy: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy  # name: "module:attribute"

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        # a set: a command already imported is in both
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, attribute = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


_COMMANDS = {
    "backtest": "streams.cli.backtest:backtest_command",
    "simulate": "streams.cli.simulate:simulate_command",
    "demo": "streams.cli.demo:demo",
    "broker": "streams.cli.live:broker_command",
    "worker": "streams.cli.live:worker_command",
    "rollout": "streams.cli.live:rollout_group",
    "gate": "streams.cli.gate:gate_group",
    "override": "streams.cli.gate:override_command",
    "ingest": "streams.cli.ingest:ingest_command",
    "detect": "streams.cli.detect:detect_command",
}


@click.group(cls=_LazyGroup, lazy=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rumgate")
def cli() -> None:
    """rumgate: promote, hold or roll back a release from real users' web vitals.

    \b
    Exit codes of commands that end with a verdict:
      0 promote   1 rollback   2 hold / no decision   3 error
    """


def main() -> None:
    """Console entry point: click's usage errors exit 3, not click's default 2 (= hold)."""
    try:
        cli.main(prog_name="rumgate", standalone_mode=False)  # also under python -m
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR)
    except ValueError as exc:
        if not _refused_rollout(exc):
            raise
        click.echo(f"Error: rollout refused: {exc}", err=True)
        sys.exit(EXIT_ERROR)


def _refused_rollout(exc: Exception) -> bool:
    """A rollout no command may build (an id or name outside detectors.rollout's alphabet):
    exit 3 with the reason, not a traceback whose exit 1 would read as rollback. Looked up
    among loaded modules: commands import detectors only when they run."""
    rollout = sys.modules.get("detectors.rollout")
    return rollout is not None and isinstance(exc, rollout.RolloutError)
