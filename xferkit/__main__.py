"""``python -m xferkit``: the same as the ``xferkit`` command."""

from .cli import main

main()
