"""Import a script of the repository (``scripts/``, ``benchmarks/``), which is not a package,
as a module, so that tests can call its functions."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script(relative: str) -> ModuleType:
    """The module of the script at ``relative`` (to the repository root), executed once.

    The script's folder is put on ``sys.path`` first, as Python does when it runs a script, so
    that the script's imports of its sibling scripts (``import bench_relax``) work the same.
    """
    path = ROOT / relative
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
