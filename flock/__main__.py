"""``python -m flock`` runs the ``flock`` command."""

import sys

from .cli import main

sys.exit(main())
