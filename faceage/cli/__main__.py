"""``python -m faceage.cli``: the ``faceage`` command."""

import sys

from faceage.cli import main

sys.exit(main())
