#!/usr/bin/env python3
"""Build a TensorRT engine from a tapeout bundle: ``python build_engine.py [build_config.json]``.

tapeout copies this file, unchanged, next to ``model.onnx`` and ``build_config.json`` when it
writes a deployable bundle (``compile(..., target="gpu", engine=False)``, CLI ``--no-engine``);
on a machine with TensorRT it is also what tapeout itself runs. It needs only the Python
standard library and ``tensorrt`` (10.x; 8.6 and 9.x work too), and writes:

* ``model.engine``: the serialized engine for the GPU it runs on;
* ``layers.json``: the engine inspector's per-layer report (layer names, fused ONNX nodes,
  the precision each layer runs in);
* ``timing.cache``: TensorRT's timing cache, read back by the next build.

``build_config.json`` holds the choices tapeout made from the target and the graph: precision
flags, 2:4 sparse weights, the workspace limit, optimization profiles for dynamic dimensions,
an optional DLA core. Every TensorRT call below is in TensorRT's documented Python API.
TensorRT 11 removed the precision builder flags (networks are strongly typed); the Q/DQ
nodes of an int8 model still say what runs in int8, and an fp16 build needs a model converted
to fp16 first, which this script reports instead of failing obscurely.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

#: Precision -> TensorRT builder flag name (``trt.BuilderFlag.<name>``).
PRECISION_FLAGS = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8", "fp8": "FP8"}


def load_config(path: str | Path) -> dict[str, Any]:
    """The build configuration, with every file path made absolute (relative to the config)."""
    path = Path(path)
    cfg: dict[str, Any] = json.loads(path.read_text())
    for key in ("onnx", "engine", "layers", "timing_cache"):
        if cfg.get(key):
            cfg[key] = str((path.parent / cfg[key]).resolve())
    return cfg


def _major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def network_flags(trt: Any) -> int:
    """0 on TensorRT 10+ (explicit batch is the only mode); EXPLICIT_BATCH before that."""
    if _major(trt) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: str) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n  " + "\n  ".join(errors))


def set_precisions(trt: Any, config: Any, precisions: list[str], notes: list[str]) -> None:
    for precision in precisions:
        flag = PRECISION_FLAGS.get(precision)
        if flag is None:
            continue
        if hasattr(trt.BuilderFlag, flag):
            config.set_flag(getattr(trt.BuilderFlag, flag))
        elif precision != "int8":  # strongly typed (TensorRT 11): the Q/DQ nodes say int8
            notes.append(
                f"TensorRT {trt.__version__} has no {flag} builder flag (strongly typed "
                f"networks): convert model.onnx to {precision} first to build in {precision}"
            )


def add_profiles(trt: Any, builder: Any, config: Any, profiles: dict[str, Any]) -> None:
    """One optimization profile covering every dynamic input's min/opt/max shape."""
    if not profiles:
        return
    profile = builder.create_optimization_profile()
    for name, shapes in profiles.items():
        profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(profile)


def load_timing_cache(config: Any, path: str | None) -> Any:
    blob = Path(path).read_bytes() if path and Path(path).is_file() else b""
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, False)  # ignore_mismatch=False: a stale cache is rebuilt
    return cache


def save_timing_cache(config: Any, path: str | None) -> None:
    if not path:
        return
    cache = config.get_timing_cache()
    if cache is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(bytes(memoryview(cache.serialize())))


def inspect_engine(trt: Any, logger: Any, serialized: Any) -> dict[str, Any] | None:
    """The engine inspector's JSON report, or None where this TensorRT has no inspector."""
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None or not hasattr(engine, "create_engine_inspector"):
        return None
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(text)


def make_builder_config(trt: Any, builder: Any, cfg: dict[str, Any], notes: list[str]) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg["workspace_mb"]) << 20)
    set_precisions(trt, config, list(cfg.get("precisions", [])), notes)
    if not cfg.get("tf32", True) and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if cfg.get("sparse_weights"):
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if cfg.get("dla_core") is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(cfg["dla_core"])
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    return config


def build(cfg: dict[str, Any], trt: Any = None, verbose: bool = False) -> dict[str, Any]:
    """Build the engine ``cfg`` describes; returns what was built (also printed by main)."""
    if trt is None:
        trt = importlib.import_module("tensorrt")
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parse_onnx(trt, network, logger, cfg["onnx"])
    notes: list[str] = []
    config = make_builder_config(trt, builder, cfg, notes)
    add_profiles(trt, builder, config, cfg.get("profiles") or {})
    load_timing_cache(config, cfg.get("timing_cache"))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the log above)")
    engine_bytes = bytes(memoryview(serialized))
    Path(cfg["engine"]).write_bytes(engine_bytes)
    save_timing_cache(config, cfg.get("timing_cache"))
    layers = inspect_engine(trt, logger, engine_bytes)
    if layers is not None and cfg.get("layers"):
        Path(cfg["layers"]).write_text(json.dumps(layers, indent=1))
    return {
        "engine": cfg["engine"],
        "engine_bytes": len(engine_bytes),
        "layers": cfg.get("layers") if layers is not None else None,
        "tensorrt": str(trt.__version__),
        "build_s": round(time.perf_counter() - start, 3),
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    here = Path(__file__).resolve().parent
    cli.add_argument("config", nargs="?", default=str(here / "build_config.json"))
    cli.add_argument("--engine", help="where to write the engine (default: from the config)")
    cli.add_argument("--timing-cache", help="timing cache file (default: from the config)")
    cli.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    args = cli.parse_args(argv)
    cfg = load_config(args.config)
    if args.engine:
        cfg["engine"] = str(Path(args.engine).resolve())
    if args.timing_cache:
        cfg["timing_cache"] = str(Path(args.timing_cache).resolve())
    try:
        result = build(cfg, verbose=args.verbose)
    except ImportError as e:
        print(f"build_engine.py needs TensorRT (pip install tensorrt): {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
