"""python -m profiler: the stprof command."""

import sys

from profiler.cli import main

sys.exit(main())
