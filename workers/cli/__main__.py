"""``python -m workers.cli``: the same as the ``distillery`` command."""

from workers.cli.main import main

main()
