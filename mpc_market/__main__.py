"""``python -m mpc_market``: the same as the ``mpc-market`` command."""

import sys

from .cli.main import main

sys.exit(main())
