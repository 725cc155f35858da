"""``python -m qnb``: the ``qnb`` command."""

import sys

from ._cli import main

sys.exit(main())
