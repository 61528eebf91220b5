"""`python -m dsv4rt ...`: see dsv4rt.cli."""

import sys

from dsv4rt.cli import main

sys.exit(main())
