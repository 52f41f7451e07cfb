"""``python -m eventkit``: the ``eventkit`` command."""

import sys

from eventkit.cli import main

sys.exit(main())
