"""Seeded mutations of ONNX models: the bad model files a compiler meets in the wild.

``mutate(model, rng, folder)`` returns a copy of ``model`` with one to three mutations, each
drawn from ``MUTATIONS`` (a table: name -> function). The families follow what real broken
files look like: attribute values out of range or of the wrong length, declared shapes with
negative, zero or huge dims, initializers whose bytes disagree with their shape,
external-data paths that are missing or point outside the model's folder, missing optional
inputs, wrong ranks and element types, Split outputs that disagree with ``num_outputs``.
Nothing here imports tapeout: the fuzzer judges the compiler from outside.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import onnx
from onnx import AttributeProto, TensorProto

#: Integers that break code: zero, negatives, the edges of int32/int64, sizes past memory.
BAD_INTS = [0, -1, -2, 2, 7, 1 << 30, (1 << 31) - 1, -(1 << 31), (1 << 63) - 1, 1 << 40]
BAD_FLOATS = [float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e30]
BAD_DIMS = [-1, -7, 0, 1 << 40, 1 << 62, 3]
ELEM_TYPES = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 16, 12, 13, 17, 21]

Mutation = Callable[[onnx.ModelProto, random.Random, Path], bool]


def _nodes_with(model: onnx.ModelProto, kinds: set[int]) -> list[tuple[onnx.NodeProto, int]]:
    return [(n, i) for n in model.graph.node for i, a in enumerate(n.attribute) if a.type in kinds]


def attr_int(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    found = _nodes_with(model, {AttributeProto.INT})
    if not found:
        return False
    node, i = rng.choice(found)
    node.attribute[i].i = rng.choice(BAD_INTS)
    return True


def attr_ints(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    found = _nodes_with(model, {AttributeProto.INTS})
    if not found:
        return False
    node, i = rng.choice(found)
    attr = node.attribute[i]
    values = list(attr.ints)
    choice = rng.randrange(4)
    if choice == 0:
        values = values + [rng.choice(BAD_INTS)] * rng.randint(1, 6)  # too long
    elif choice == 1:
        values = values[: rng.randrange(len(values) + 1)]  # too short
    elif values:
        values[rng.randrange(len(values))] = rng.choice(BAD_INTS)
    del attr.ints[:]
    attr.ints.extend(values)
    return True


def attr_float(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    found = _nodes_with(model, {AttributeProto.FLOAT, AttributeProto.FLOATS})
    if not found:
        return False
    node, i = rng.choice(found)
    attr = node.attribute[i]
    if attr.type == AttributeProto.FLOAT:
        attr.f = rng.choice(BAD_FLOATS)
    elif attr.floats:
        attr.floats[rng.randrange(len(attr.floats))] = rng.choice(BAD_FLOATS)
    return True


def attr_remove(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    nodes = [n for n in model.graph.node if n.attribute]
    if not nodes:
        return False
    node = rng.choice(nodes)
    del node.attribute[rng.randrange(len(node.attribute))]
    return True


def input_missing(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    nodes = [n for n in model.graph.node if n.input]
    if not nodes:
        return False
    node = rng.choice(nodes)
    if rng.random() < 0.5:
        node.input[rng.randrange(len(node.input))] = ""  # an optional input left out
    else:
        del node.input[-1]
    return True


def _value_infos(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    g = model.graph
    return [*g.input, *g.output, *g.value_info]


def dims(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    shaped = [v for v in _value_infos(model) if v.type.tensor_type.shape.dim]
    if not shaped:
        return False
    dim = rng.choice(list(rng.choice(shaped).type.tensor_type.shape.dim))
    if rng.random() < 0.15:
        dim.dim_param = rng.choice(["N", "", "0"])
    else:
        dim.dim_value = rng.choice(BAD_DIMS)
    return True


def rank(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    shaped = [v for v in model.graph.input if v.type.HasField("tensor_type")]
    if not shaped:
        return False
    shape = rng.choice(shaped).type.tensor_type.shape
    if shape.dim and rng.random() < 0.5:
        del shape.dim[rng.randrange(len(shape.dim))]
    elif rng.random() < 0.3:
        del shape.dim[:]  # a 0-d (scalar) input
    else:
        shape.dim.add().dim_value = rng.choice([1, 2, 3])
    return True


def elem_type(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    if model.graph.initializer and rng.random() < 0.4:
        rng.choice(model.graph.initializer).data_type = rng.choice(ELEM_TYPES)
        return True
    values = [v for v in model.graph.input if v.type.HasField("tensor_type")]
    if not values:
        return False
    rng.choice(values).type.tensor_type.elem_type = rng.choice(ELEM_TYPES)
    return True


def _internal(model: onnx.ModelProto) -> list[TensorProto]:
    return [t for t in model.graph.initializer if t.data_location != TensorProto.EXTERNAL]


def raw_data(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    inits = _internal(model)
    if not inits:
        return False
    t = rng.choice(inits)
    if not t.raw_data:
        try:
            arr = onnx.numpy_helper.to_array(t)
        except Exception:  # an earlier mutation made it unreadable already
            return False
        t.ClearField("float_data"), t.ClearField("int32_data"), t.ClearField("int64_data")
        t.ClearField("double_data")
        t.raw_data = arr.tobytes()
    data = bytes(t.raw_data)
    choice = rng.randrange(3)
    if choice == 0:
        t.raw_data = data[: rng.randrange(len(data) + 1)]
    elif choice == 1:
        t.raw_data = data + bytes(rng.randint(1, 7))
    else:
        t.dims.append(rng.choice([2, 3, 1 << 20]))  # shape disagrees with the bytes
    return True


def external_data(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    inits = _internal(model)
    if not inits:
        return False
    t = rng.choice(inits)
    try:
        arr = onnx.numpy_helper.to_array(t)
    except Exception:  # an earlier mutation made it unreadable already
        return False
    t.ClearField("raw_data"), t.ClearField("float_data"), t.ClearField("int64_data")
    t.ClearField("int32_data"), t.ClearField("double_data")
    t.data_location = TensorProto.EXTERNAL
    (folder / "weights.bin").write_bytes(arr.tobytes())  # one per case: the last one wins
    location = rng.choice(["weights.bin", "missing.bin", "../outside.bin", "/etc/hostname",
                           "sub/../../weights.bin", "weights.bin"])
    entries = {"location": location}
    if rng.random() < 0.4:
        entries["offset"] = str(rng.choice([0, 3, 1 << 40, -4]))
    if rng.random() < 0.4:
        entries["length"] = str(rng.choice([0, 1, arr.nbytes + 8, -1]))
    for key, value in entries.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    (folder.parent / "outside.bin").write_bytes(arr.tobytes())
    return True


def split_outputs(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    splits = [n for n in model.graph.node if n.op_type == "Split"]
    node = rng.choice(splits) if splits else None
    if node is None:
        return False
    if rng.random() < 0.5:
        node.output.append(f"{node.output[0]}_extra")
    elif len(node.output) > 1:
        del node.output[-1]
    attr = next((a for a in node.attribute if a.name == "num_outputs"), None)
    if attr is None:
        attr = onnx.helper.make_attribute("num_outputs", 2)
        node.attribute.append(attr)
    attr.i = rng.choice([0, -1, 1, 3, (1 << 31) - 1])
    return True


def cast_to(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    casts = [n for n in model.graph.node if n.op_type in ("Cast", "CastLike", "EyeLike",
                                                           "RandomNormal", "ConstantOfShape")]
    if not casts:
        return False
    node = rng.choice(casts)
    for a in node.attribute:
        if a.name in ("to", "dtype"):
            a.i = rng.choice([-1, 0, 8, 16, 999, (1 << 63) - 1])
            return True
    return False


def op_type(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    if not model.graph.node:
        return False
    rng.choice(model.graph.node).op_type = rng.choice(
        ["Concat", "Split", "Gather", "Add", "Conv", "MatMul", "Reshape", "Transpose", "Relu"])
    return True


def opset(model: onnx.ModelProto, rng: random.Random, folder: Path) -> bool:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = rng.choice([1, 6, 11, 99])
            return True
    return False


MUTATIONS: dict[str, Mutation] = {
    "attr_int": attr_int,
    "attr_ints": attr_ints,
    "attr_float": attr_float,
    "attr_remove": attr_remove,
    "input_missing": input_missing,
    "dims": dims,
    "rank": rank,
    "elem_type": elem_type,
    "raw_data": raw_data,
    "external_data": external_data,
    "split_outputs": split_outputs,
    "cast_to": cast_to,
    "op_type": op_type,
    "opset": opset,
}


def mutate(model: onnx.ModelProto, rng: random.Random, folder: Path) -> tuple[onnx.ModelProto,
                                                                              list[str]]:
    """A mutated copy of ``model`` (files it refers to are written into ``folder``) and the
    names of the mutations applied."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    applied: list[str] = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        names = list(MUTATIONS)
        rng.shuffle(names)
        for name in names:  # the first one that applies to this model
            if MUTATIONS[name](out, rng, folder):
                applied.append(name)
                break
    return out, applied
