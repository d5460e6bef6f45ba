"""The fuzz worker: compiles and runs one model per request, in a process of its own.

Reads JSON lines ``{"model": path, "target": name, "run": bool}`` on stdin and answers each
with one JSON line ``{"outcome": ..., "type": ..., "message": ...}`` on the stdout it was
started with; everything else the compiler or a toolchain prints goes to stderr. Outcomes:
``ok``, ``typed`` (a ``TapeoutError``: what a bad model must give), ``raw`` (any other
exception: a bug), ``too-big`` (the model imported, but its declared inputs are too large to
make). A crash or a hang is seen by the runner, which restarts the worker.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import numpy as np

#: Elements of synthesized inputs above which a case is reported as too big to run.
MAX_ELEMENTS = 1 << 22


class TooBig(Exception):
    pass


def synth_inputs(graph: Any, rng: np.random.Generator) -> list[np.ndarray]:
    """Random arrays matching the graph's inputs (symbolic dims take 2)."""
    from compiler.ir.types import NUMPY_DTYPES

    arrays = []
    for value in graph.inputs:
        shape = tuple(d if isinstance(d, int) else 2 for d in value.type.shape)
        if int(np.prod(shape, dtype=np.float64)) > MAX_ELEMENTS:
            raise TooBig(f"input %{value.name} has shape {list(shape)}")
        dtype = NUMPY_DTYPES[value.type.dtype]
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.random(shape) < 0.5)
        else:
            arrays.append(rng.integers(0, 4, shape).astype(dtype))
    return arrays


def run_case(model: str, target: str, run: bool) -> dict[str, Any]:
    import compiler
    from compiler.errors import TapeoutError
    from compiler.specialize import is_static
    from compiler.target import load_target

    rng = np.random.default_rng(0)
    try:
        graph = compiler.import_model(model)
        inputs = synth_inputs(graph, rng)
        options: dict[str, Any] = {}
        if not is_static(graph):
            options["example_inputs"] = inputs
        if "quantize" in " ".join(load_target(target).pipeline):
            options["calibration_data"] = [tuple(synth_inputs(graph, rng)) for _ in range(4)]
        art = compiler.compile(graph, target, **options)
        if run:
            art.run(*inputs)
        return {"outcome": "ok"}
    except TooBig as e:
        return {"outcome": "too-big", "type": "TooBig", "message": str(e)}
    except TapeoutError as e:
        return {"outcome": "typed", "type": type(e).__name__, "message": str(e)[:300]}
    except Exception as e:  # what the fuzzer hunts: any error that is not a typed one
        tb = traceback.extract_tb(e.__traceback__)
        where = ["/".join(f.filename.split("/")[-2:]) + f":{f.lineno}" for f in tb[-3:]]
        return {"outcome": "raw", "type": type(e).__name__, "message": str(e)[:300],
                "where": where}


#: Address-space limit of a worker (bytes): a model that makes the compiler allocate past it
#: shows up as a MemoryError (a raw error) instead of swapping a shared machine to death.
MEMORY_LIMIT = int(os.environ.get("TAPEOUT_FUZZ_MEMORY", 8 << 30))


def main() -> None:
    import logging
    import resource
    import warnings

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the compiler or a toolchain prints goes to stderr
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        result = run_case(request["model"], request["target"], request.get("run", True))
        answers.write(json.dumps(result) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
