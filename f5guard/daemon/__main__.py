"""``python -m f5guard.daemon``: what ``f5guard start`` spawns detached."""

import sys

from f5guard.daemon.process import main

sys.exit(main())
