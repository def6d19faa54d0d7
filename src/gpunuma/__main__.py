"""``python -m gpunuma``: the same as the ``gpunuma`` command."""

import sys

from gpunuma.tools.cli import main

sys.exit(main())
