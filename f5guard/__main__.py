"""``python -m f5guard`` is the ``f5guard`` command."""

from f5guard.cli import main

main()
