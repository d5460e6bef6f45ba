# mypy: disable-error-code="valid-type"
"""The VNNI dot-product intrinsic with its accumulator in ``local`` scope.

TVM's own ``dot_16x4_vnni`` describes the accumulator as a global buffer; our kernels keep
the accumulator tile in a ``local`` cache (registers after LLVM's scalar replacement), so the
same description and implementation are registered here with ``scope="local"`` on ``C``.
Computes ``C[i] += sum_k u8(A[k]) * s8(B[i, k])`` for 16 lanes with one ``vpdpbusd``.
"""

from __future__ import annotations

from typing import Any

NAME = "tapeout_dot_16x4_vnni_local"
_registered = False


def vnni_local() -> str:
    """Register the intrinsic once and return its name."""
    global _registered
    if not _registered:
        from tvm.s_tir import TensorIntrin

        desc, impl = _functions()
        TensorIntrin.register(NAME, desc, impl, override=True)
        _registered = True
    return NAME


def _functions() -> tuple[Any, Any]:
    # TVMScript: T.Buffer(...) annotations are TVM's, not Python types (hence the mypy line).
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            # LLVM 20 and later take the byte operands as <64 x i8>.
            a = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            a64 = T.reinterpret(T.broadcast(a, 16), dtype="int8x64")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                a64,
                B.vload([0, 0], dtype="int8x64"),
                dtype="int32x16",
            )

    return desc, impl
