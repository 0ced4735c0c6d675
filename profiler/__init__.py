"""stprof: a syscall and trap profiler.

The public API is the data model (``Profile``) and the errors; the command
line is the ``stprof`` package.  Importing this package loads no collector, so it
works on every platform.
"""

from profiler.errors import StprofError
from profiler.model import SCHEMA, Profile

__all__ = ["SCHEMA", "Profile", "StprofError"]
