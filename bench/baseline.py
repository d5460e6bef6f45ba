"""Another version of a kernel file, loaded beside this tree's (the benches' ``--baseline``)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def load_module(path: str, name: str) -> ModuleType:
    """The Python file ``path`` as the module ``name`` (registered in ``sys.modules``:
    dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
