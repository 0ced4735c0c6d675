"""The stprof command line: the one place collectors and renderers meet.

One module per subcommand (``run``, ``report``, ``doctor``, ``record``,
``compare``, ``check``), each with ``register(subparsers)`` and
``execute(args) -> exit status``; ``options`` holds what they share and
``main`` puts them together.  Nothing in ``profiler``, ``collectors`` or
``reports`` imports this package.
"""
