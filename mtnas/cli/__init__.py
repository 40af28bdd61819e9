"""The ``mtnas`` command line and the demo it runs.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._demo": ("DEMO_SPACE", "DEMO_TRIALS", "run_demo",),
    "._main": ("COMMANDS", "Command", "build_parser", "main", "use_plugins",),
    "._options": ("OPTIONS", "Parser", "at_least", "choice", "positive_float",),
})
