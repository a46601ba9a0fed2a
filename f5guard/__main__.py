"""``python -m f5guard`` is the ``f5guard`` command."""

import sys

from f5guard.cli import main

main()
