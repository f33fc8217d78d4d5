"""Attack tests reuse the fixtures of the functional tests (node services, deployments)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from test_deployment import market  # noqa: E402,F401 - fixtures
from test_service import deployment  # noqa: E402,F401
