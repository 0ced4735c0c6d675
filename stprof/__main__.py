"""python -m stprof: the stprof command."""

import sys

from stprof.main import main

sys.exit(main())
