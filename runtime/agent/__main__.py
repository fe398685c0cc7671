"""Entry point: ``python <agent folder>/__main__.py --fd N --mode worker|template``.

Run as a script path, the folder is loaded as a private package without putting it (or its
parent) on ``sys.path``, so the handler's imports see only its own code and site-packages.
"""

import importlib
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _worker_module():  # type: ignore[no-untyped-def]
    if __package__:
        return importlib.import_module(__package__ + ".worker")
    name = "_warmstart_agent"
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(_HERE, "__init__.py"), submodule_search_locations=[_HERE]
    )
    assert spec is not None
    assert spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(name + ".worker")


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0]) == _HERE:
        del sys.path[0]
    sys.exit(_worker_module().main(sys.argv[1:]))  # type: ignore[no-untyped-call]
