"""Entry point for `python -m pinning_hook`."""

import sys

from pinning_hook.cli import main

sys.exit(main())
