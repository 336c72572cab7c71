"""``python -m infermeter`` is the ``infermeter`` command."""

from .cli import main

main()
