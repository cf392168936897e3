"""``python -m tfflows.cli``."""

import sys

from tfflows.cli import main

sys.exit(main())
