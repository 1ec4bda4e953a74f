"""Starts the stack profile (`autotune.observe.stacks.profiler`) in every Python process of a server.

The trial runner puts this folder first on the server's PYTHONPATH when it profiles stacks, so each process that
the server starts (vLLM's API servers, its engine core when spawned) runs this at interpreter start; forked
children restart the profiler themselves. Python imports only the first `sitecustomize` on the path, so this one
then runs the one it shadows (e.g. the distribution's), if any.
"""

import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))

try:
    from autotune.observe.stacks.profiler import start_from_environment

    start_from_environment()
except Exception as exc:  # a profiler must never keep a server from starting
    print(f"autotune: stack profile not started: {type(exc).__name__}: {exc}", file=sys.stderr)

_rest = [p for p in sys.path if os.path.abspath(p or ".") != _here]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
if _spec is not None and _spec.loader is not None:
    _shadowed = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_shadowed)
