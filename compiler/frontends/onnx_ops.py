"""The whole ONNX converter table: loads every converter module into ``onnx_table``.

``CONVERTERS`` (ONNX op type -> converter) and ``FOLDERS`` (op type -> NumPy evaluation at
import) live in the leaf module ``onnx_table``; importing this module fills them. The order
matters where a module wraps the entry another registered (Dropout, Mod, ArgMax, Resize,
Split, Shape, Q/DQ): part 1 first, ``onnx_ops_dynamic`` last.
"""

from __future__ import annotations

from compiler.frontends import onnx_ops_core  # noqa: F401  (first: later modules wrap entries)

# isort: split
from compiler.frontends import (  # noqa: F401  (each registers its converters or folders)
    onnx_fold,
    onnx_ops_extra,
    onnx_ops_more,
    onnx_ops_nn,
    onnx_ops_signal,
    onnx_ops_tensor,
    onnx_ops_vision,
    onnx_scan,
)

# isort: split
# Last: it wraps the converters registered above (Resize, Split, Shape, Q/DQ, OneHot, ...)
# with their runtime-operand forms.
from compiler.frontends import onnx_ops_dynamic  # noqa: F401
from compiler.frontends.onnx_table import CONVERTERS, FOLDERS

__all__ = ["CONVERTERS", "FOLDERS"]
