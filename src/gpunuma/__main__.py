"""``python -m gpunuma``: the same as the ``gpunuma`` command."""

import sys

from gpunuma.cli import main

sys.exit(main())
