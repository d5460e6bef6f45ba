"""A CPU stand-in for the documented part of TensorRT's Python API (10.x), for tests.

Each class has exactly the members TensorRT documents and ``build_engine.py`` uses (anything
else is an AttributeError, so using an undocumented name fails a test); calls are recorded
in ``FakeTensorRT.calls``. The "engine" is JSON describing the build, and the inspector
reports one layer per ONNX node, in the precision the builder flags would give it.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

#: Documented names, by the TensorRT Python API page they are on (docs.nvidia.com/deeplearning
#: /tensorrt/latest/_static/python-api/): what build_engine.py and runtime.py may use.
DOCUMENTED: dict[str, set[str]] = {
    "tensorrt": {
        "Logger",
        "Builder",
        "OnnxParser",
        "Runtime",
        "BuilderFlag",
        "MemoryPoolType",
        "NetworkDefinitionCreationFlag",
        "ProfilingVerbosity",
        "DeviceType",
        "LayerInformationFormat",
        "TensorIOMode",
        "nptype",
        "__version__",
    },
    "Logger": {"WARNING", "INFO", "VERBOSE", "ERROR"},
    "BuilderFlag": {"FP16", "BF16", "INT8", "FP8", "SPARSE_WEIGHTS", "GPU_FALLBACK", "TF32"},
    "MemoryPoolType": {"WORKSPACE"},
    "NetworkDefinitionCreationFlag": {"EXPLICIT_BATCH", "STRONGLY_TYPED"},
    "ProfilingVerbosity": {"DETAILED", "LAYER_NAMES_ONLY", "NONE"},
    "DeviceType": {"GPU", "DLA"},
    "LayerInformationFormat": {"JSON", "ONELINE"},
    "TensorIOMode": {"INPUT", "OUTPUT"},
    "Builder": {
        "create_network",
        "create_builder_config",
        "create_optimization_profile",
        "build_serialized_network",
    },
    "OnnxParser": {"parse_from_file", "num_errors", "get_error"},
    "IBuilderConfig": {
        "set_memory_pool_limit",
        "set_flag",
        "clear_flag",
        "add_optimization_profile",
        "create_timing_cache",
        "set_timing_cache",
        "get_timing_cache",
        "profiling_verbosity",
        "default_device_type",
        "DLA_core",
    },
    "IOptimizationProfile": {"set_shape"},
    "ITimingCache": {"serialize"},
    "Runtime": {"deserialize_cuda_engine"},
    "ICudaEngine": {
        "create_engine_inspector",
        "create_execution_context",
        "num_io_tensors",
        "get_tensor_name",
        "get_tensor_mode",
        "get_tensor_dtype",
    },
    "IEngineInspector": {"get_engine_information"},
    "IExecutionContext": {
        "set_input_shape",
        "set_tensor_address",
        "get_tensor_shape",
        "execute_async_v3",
    },
}


class _Enum:
    def __init__(self, name: str, members: set[str]):
        for i, member in enumerate(sorted(members)):
            setattr(self, member, _Member(f"{name}.{member}", i))


class _Member(str):
    def __new__(cls, text: str, value: int) -> _Member:
        obj = super().__new__(cls, text)
        obj.value = value  # type: ignore[attr-defined]
        return obj

    def __int__(self) -> int:
        return int(self.value)  # type: ignore[attr-defined]


class FakeTensorRT(types.ModuleType):
    """``sys.modules["tensorrt"] = FakeTensorRT()`` makes ``import tensorrt`` return it."""

    def __init__(
        self,
        version: str = "10.3.0",
        precision_flags: bool = True,
        parse_errors: list[str] | None = None,
    ):
        super().__init__("tensorrt")
        self.__version__ = version
        self.calls: list[tuple[str, Any]] = []
        flags = DOCUMENTED["BuilderFlag"]
        if not precision_flags:  # TensorRT 11: strongly typed networks, no precision flags
            flags = flags - {"FP16", "BF16", "INT8", "FP8"}
        self.BuilderFlag = _Enum("BuilderFlag", flags)
        for name in (
            "MemoryPoolType",
            "NetworkDefinitionCreationFlag",
            "ProfilingVerbosity",
            "DeviceType",
            "LayerInformationFormat",
            "TensorIOMode",
        ):
            setattr(self, name, _Enum(name, DOCUMENTED[name]))
        fake = self

        class Logger:
            WARNING, INFO, VERBOSE, ERROR = "WARNING", "INFO", "VERBOSE", "ERROR"

            def __init__(self, severity: str = "WARNING"):
                fake.calls.append(("Logger", severity))

        class Builder:
            def __init__(self, logger: Any):
                fake.calls.append(("Builder", None))

            def create_network(self, flags: int = 0) -> dict[str, Any]:
                fake.calls.append(("create_network", flags))
                return {"onnx": None}

            def create_builder_config(self) -> IBuilderConfig:
                return IBuilderConfig()

            def create_optimization_profile(self) -> IOptimizationProfile:
                return IOptimizationProfile()

            def build_serialized_network(self, network: dict, config: IBuilderConfig) -> bytes:
                fake.calls.append(("build_serialized_network", None))
                return json.dumps(
                    {
                        "onnx": network["onnx"],
                        "flags": sorted(config.flags),
                        "profiles": config.profiles,
                    }
                ).encode()

        class OnnxParser:
            def __init__(self, network: dict, logger: Any):
                self.network = network
                self.num_errors = len(parse_errors or [])

            def parse_from_file(self, path: str) -> bool:
                fake.calls.append(("parse_from_file", path))
                self.network["onnx"] = path
                return not parse_errors

            def get_error(self, index: int) -> str:
                return (parse_errors or [])[index]

        class IOptimizationProfile:
            def __init__(self) -> None:
                self.shapes: dict[str, list] = {}

            def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
                self.shapes[name] = [list(lo), list(opt), list(hi)]

        class ITimingCache:
            def __init__(self, blob: bytes):
                self.blob = blob

            def serialize(self) -> bytes:
                return self.blob + b"+timed"

        class IBuilderConfig:
            def __init__(self) -> None:
                self.flags: set[str] = set()
                self.profiles: list[dict] = []
                self.cache: ITimingCache | None = None
                self.profiling_verbosity = None
                self.default_device_type = None
                self.DLA_core = -1

            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                fake.calls.append(("set_memory_pool_limit", (str(pool), size)))

            def set_flag(self, flag: str) -> None:
                self.flags.add(str(flag))

            def clear_flag(self, flag: str) -> None:
                fake.calls.append(("clear_flag", str(flag)))

            def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
                self.profiles.append(profile.shapes)
                return len(self.profiles) - 1

            def create_timing_cache(self, blob: bytes) -> ITimingCache:
                fake.calls.append(("create_timing_cache", bytes(blob)))
                return ITimingCache(bytes(blob))

            def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
                self.cache = cache
                return True

            def get_timing_cache(self) -> ITimingCache | None:
                return self.cache

        class IEngineInspector:
            def __init__(self, engine: dict):
                self.engine = engine

            def get_engine_information(self, fmt: str) -> str:
                return json.dumps(fake_inspector(self.engine))

        class ICudaEngine:
            def __init__(self, info: dict):
                self.info = info

            def create_engine_inspector(self) -> IEngineInspector:
                return IEngineInspector(self.info)

        class Runtime:
            def __init__(self, logger: Any):
                pass

            def deserialize_cuda_engine(self, blob: bytes) -> ICudaEngine:
                return ICudaEngine(json.loads(bytes(blob)))

        self.Logger, self.Builder, self.OnnxParser, self.Runtime = (
            Logger,
            Builder,
            OnnxParser,
            Runtime,
        )

    def flags_of(self, engine_file: Path) -> list[str]:
        return list(json.loads(engine_file.read_bytes())["flags"])


def fake_inspector(engine: dict) -> dict[str, Any]:
    """One layer per ONNX node, TensorRT 10 style, in the precision the flags give it."""
    import onnx

    model = onnx.load(engine["onnx"])
    flags = set(engine["flags"])
    produced_by_dq = {
        o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output
    }
    layers = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        compute = node.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose")
        if "BuilderFlag.INT8" in flags and compute and node.input[0] in produced_by_dq:
            dtype = "Int8 NC/32HW32"
        elif "BuilderFlag.FP16" in flags:
            dtype = "Channel major FP16 format where channel % 8 == 0"
        else:
            dtype = "Row major linear FP32"
        layers.append(
            {
                "Name": node.name,
                "LayerType": node.op_type,
                "Inputs": [{"Name": i, "Format/Datatype": dtype} for i in node.input[:1]],
                "Outputs": [
                    {"Name": o, "Format/Datatype": dtype.replace("Int8", "Half")}
                    for o in node.output
                ],
                "Metadata": f"[ONNX Layer: {node.name}]",
            }
        )
    return {"Layers": layers, "Bindings": [i.name for i in model.graph.input]}
