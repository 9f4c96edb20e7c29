"""``python -m streams``: the ``rumgate`` command, for environments without the script."""

from streams.cli import main

main()
