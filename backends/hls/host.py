"""The host side of C simulation: float edges, the C ABI that ctypes calls, the testbench.

The top function computes on integers. ``tb/host.cpp`` wraps it for whole graphs: it
quantizes float inputs exactly as ``q.quantize`` does (``tapeout::quantize_tensor``), streams
them into the top function, and turns the integer outputs back into the graph's outputs
(``dequantize_tensor``, or a float table for a float island at the output). Its one C entry
point::

    int tapeout_run(int n, const void* const* inputs, void* const* outputs);

runs ``n`` samples, one top-function call each; ``inputs[i]``/``outputs[i]`` point at ``n``
consecutive samples of graph input/output ``i`` in the graph's dtype (float32 for float
values). It returns 0, or -1 if a stream was read empty or left unread.

``tb/tb_<top>.cpp`` is the testbench: it reads ``data/input_<i>.bin`` and
``data/output_<i>.bin`` (raw little-endian arrays written by the compiler from the reference
interpreter), runs them, and exits 1 on any output element whose bits differ.
"""

from __future__ import annotations

from backends.c_emitter import CEmitter, c_float, ctype
from backends.hls.codegen import HEADER, port_type
from backends.hls.design import Buffer, Design, InputEdge, OutputEdge


def _io_ctype(dtype: str) -> str:
    return "float" if dtype == "f32" else ctype(dtype)


def host_header(design: Design) -> str:
    e = CEmitter()
    e.comment(f"host.h: C entry point of the C simulation of {design.top} -- {HEADER}")
    e.lines(["#ifndef TAPEOUT_GEN_HOST_H", "#define TAPEOUT_GEN_HOST_H", ""])
    e.lines(["#ifdef __cplusplus", 'extern "C" {', "#endif", ""])
    e.comment("Runs n samples through the top function (see backends/hls/host.py).")
    e.line("int tapeout_run(int n, const void* const* inputs, void* const* outputs);")
    e.lines(["", "#ifdef __cplusplus", "}", "#endif", "", "#endif  // TAPEOUT_GEN_HOST_H"])
    return e.text()


def _hwc(buf: Buffer) -> str:
    h, w, c = buf.hwc
    return f"{buf.ctype}, {h}, {w}, {c}"


def _input(e: CEmitter, i: int, edge: InputEdge) -> None:
    p, buf = edge.port, edge.port.edge
    src = f"static_cast<const {_io_ctype(edge.value.dtype)}*>(inputs[{i}]) + s * {buf.size}"
    e.line(f"{buf.ctype} {p.name}_data[{buf.size}];")
    data = f"{p.name}_nchw" if p.nhwc else f"{p.name}_data"
    if p.nhwc:
        e.line(f"{buf.ctype} {data}[{buf.size}];")
    if edge.scale is None:
        e.line(f"tapeout::copy<{buf.ctype}, {buf.size}>({src}, {data});")
    else:
        e.line(
            f"tapeout::quantize_tensor<{buf.ctype}, {buf.size}>({src}, {data}, "
            f"{c_float(edge.scale)}, {edge.zero_point});"
        )
    if p.nhwc:
        e.line(f"tapeout::nchw_to_nhwc<{_hwc(buf)}>({data}, {p.name}_data);")


def _output(e: CEmitter, i: int, edge: OutputEdge) -> None:
    p, buf = edge.port, edge.port.edge
    dst = f"static_cast<{_io_ctype(edge.value.dtype)}*>(outputs[{i}]) + s * {buf.size}"
    data = f"{p.name}_data"
    if p.nhwc:
        e.line(f"{buf.ctype} {p.name}_nchw{i}[{buf.size}];")
        e.line(f"tapeout::flatten_nchw<{_hwc(buf)}>({data}, {p.name}_nchw{i});")
        data = f"{p.name}_nchw{i}"
    if edge.kind == "int":
        e.line(f"tapeout::copy<{buf.ctype}, {buf.size}>({data}, {dst});")
    elif edge.kind == "dequantize" and edge.channels == 1:
        assert edge.scales is not None and edge.zero_points is not None
        e.line(
            f"tapeout::dequantize_tensor<{buf.ctype}, {buf.size}>({data}, {dst}, "
            f"{c_float(edge.scales[0])}, {int(edge.zero_points[0])});"
        )
    elif edge.kind == "dequantize":  # per channel, as numerics.dequantize with an axis
        with e.block(f"for (int i = 0; i < {buf.size}; i++)"):
            e.line(f"const int c = (i / {edge.inner}) % {edge.channels};")
            e.line(
                f"({dst})[i] = static_cast<float>(static_cast<int64_t>({data}[i]) - "
                f"output{i}_zp[c]) * output{i}_scale[c];"
            )
    else:
        with e.block(f"for (int i = 0; i < {buf.size}; i++)"):
            e.line(
                f"({dst})[i] = output{i}_table[static_cast<int>({data}[i]) - "
                f"static_cast<int>(std::numeric_limits<{buf.ctype}>::min())];"
            )


def host_source(design: Design) -> str:
    e = CEmitter()
    e.comment(f"host.cpp: float edges and C entry point for {design.top} -- {HEADER}")
    e.lines(
        [
            "#include <cstdint>",
            "#include <limits>",
            "",
            '#include "host.h"',
            f'#include "{design.top}.h"',
            '#include "tapeout/requant.h"',
            '#include "tapeout/reshape.h"',
            "",
        ]
    )
    with e.block("namespace", "}  // namespace"):
        for i, edge in enumerate(design.outputs):
            if edge.table is not None:
                e.comment(f"output {i}: float island evaluated by the reference interpreter")
                e.array(f"const float output{i}_table[{edge.table.size}]", edge.table, "float")
            if edge.kind == "dequantize" and edge.channels > 1:
                assert edge.scales is not None and edge.zero_points is not None
                e.comment(f"output {i}: per-channel dequantization")
                e.array(f"const float output{i}_scale[{edge.channels}]", edge.scales, "float")
                e.array(f"const int64_t output{i}_zp[{edge.channels}]", edge.zero_points)
        e.line("")
        with e.block("int run_one(int s, const void* const* inputs, void* const* outputs)"):
            for i, in_edge in enumerate(design.inputs):
                _input(e, i, in_edge)
            for p in design.out_ports:
                e.line(f"{p.edge.ctype} {p.name}_data[{p.edge.size}];")
            ok = _call_top(e, design)
            for i, out in enumerate(design.outputs):
                _output(e, i, out)
            e.line(f"return ({ok}) ? 0 : -1;")
    e.line("")
    with e.block(
        'extern "C" int tapeout_run(int n, const void* const* inputs, void* const* outputs)'
    ):
        with e.block("for (int s = 0; s < n; s++)"):
            e.line("if (run_one(s, inputs, outputs) != 0) return -1;")
        e.line("return 0;")
    return e.text()


def _call_top(e: CEmitter, design: Design) -> str:
    """Emit the top call; return the C condition that the streams were used correctly."""
    if design.interface != "axis":
        args = [f"{p.name}_data" for p in [*design.in_ports, *design.out_ports]]
        e.line(f"{design.top}({', '.join(args)});")
        return "true"
    checks = []
    for p in design.in_ports:
        e.line(f"tapeout::stream<{port_type(design, p)}> {p.name};")
        e.line(
            f"tapeout::write_stream<{p.edge.ctype}, {p.edge.size}, {p.packet}>("
            f"{p.name}_data, {p.name});"
        )
        checks += [f"{p.name}.empty()", f"{p.name}.underflows() == 0"]
    for p in design.out_ports:
        e.line(f"tapeout::stream<{port_type(design, p)}> {p.name};")
    e.line(f"{design.top}({', '.join(p.name for p in [*design.in_ports, *design.out_ports])});")
    for p in design.out_ports:
        e.line(
            f"tapeout::read_stream<{p.edge.ctype}, {p.edge.size}, {p.packet}>("
            f"{p.name}, {p.name}_data);"
        )
        checks += [f"{p.name}.empty()", f"{p.name}.underflows() == 0"]
    return " && ".join(checks) or "true"


def testbench_source(design: Design) -> str:
    e = CEmitter()
    e.comment(f"tb_{design.top}.cpp: golden-data testbench -- {HEADER}")
    e.comment("usage: tb [data folder, default ./data]; exit 1 on any mismatching output bit")
    e.lines(
        [
            "#include <cstdio>",
            "#include <cstring>",
            "#include <string>",
            "#include <vector>",
            "",
            '#include "host.h"',
            '#include "tb_io.h"',
            "",
        ]
    )
    ins = [
        (f"input_{i}", x.port.edge.size * _bytes(x.value.dtype))
        for i, x in enumerate(design.inputs)
    ]
    outs = [
        (f"output_{i}", x.port.edge.size, _bytes(x.value.dtype))
        for i, x in enumerate(design.outputs)
    ]
    with e.block("int main(int argc, char** argv)"):
        e.line('const std::string dir = argc > 1 ? argv[1] : "data";')
        e.line("std::vector<unsigned char> data[" + str(len(ins) + len(outs)) + "];")
        e.line("int n = -1;")
        for k, (name, size) in enumerate(ins):
            e.line(f'if (!load(dir + "/{name}.bin", {size}, data[{k}], n)) return 2;')
        for k, (name, elems, width) in enumerate(outs):
            e.line(
                f'if (!load(dir + "/{name}.bin", {elems * width}, data[{len(ins) + k}], n)) '
                "return 2;"
            )
        e.line(
            "const void* inputs[] = {"
            + ", ".join(f"data[{k}].data()" for k in range(len(ins)))
            + "};"
        )
        for k in range(len(outs)):
            e.line(f"std::vector<unsigned char> got{k}(data[{len(ins) + k}].size());")
        e.line("void* outputs[] = {" + ", ".join(f"got{k}.data()" for k in range(len(outs))) + "};")
        with e.block("if (tapeout_run(n, inputs, outputs) != 0)"):
            e.line(
                'std::fprintf(stderr, "tb: AXI-Stream protocol error (empty read or '
                'unread data)\\n");'
            )
            e.line("return 3;")
        e.line("long bad = 0;")
        for k, (name, elems, width) in enumerate(outs):
            e.line(f'bad += compare("{name}", got{k}, data[{len(ins) + k}], {elems}, {width});')
        e.line('std::printf("tb: %d samples, %ld mismatching output elements\\n", n, bad);')
        e.line("return bad == 0 ? 0 : 1;")
    return e.text()


def _bytes(dtype: str) -> int:
    return {"f32": 4, "i8": 1, "u8": 1, "i4": 1, "u4": 1, "i16": 2, "i32": 4, "i64": 8}[dtype]
