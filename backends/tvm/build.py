"""Build a lowered Relax module for a CPU: fuse, schedule, compile with LLVM, export.

The pipeline: ``LegalizeOps`` (Relax ops to TIR through TOPI), ``FoldConstant``, ``FuseOps``
and ``FuseTIR`` (elementwise chains fused into one kernel and into the conv/dense
epilogues), then schedules: the MetaSchedule database when the model was tuned, and for
every function the database does not cover our rules (``backends.tvm.schedules``) and
DLight's. ``tvm.compile`` then lowers the Relax VM code and LLVM compiles the kernels for the
target file's triple, CPU and features.

Export: a host-runnable target gives ``model.so`` (``export_library``). A foreign triple is
cross-compiled when its cross compiler is on PATH (``aarch64-linux-gnu-gcc``, Debian's
gcc-aarch64-linux-gnu and libc6-dev-arm64-cross); otherwise (or when its link fails) the
artifact holds the LLVM objects (``model.tar``: kernels compiled by LLVM for the target's CPU
and features, which a C source export would lose) and a ``build.sh`` that links them on a
machine that has the compiler.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import string
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: LLVM triple architecture -> (Python's platform.machine() names, cross compiler).
ARCHES: dict[str, tuple[tuple[str, ...], str]] = {
    "x86_64": (("x86_64", "AMD64"), "x86_64-linux-gnu-gcc"),
    "aarch64": (("aarch64", "arm64"), "aarch64-linux-gnu-gcc"),
    "arm": (("armv7l",), "arm-linux-gnueabihf-gcc"),
    "riscv64": (("riscv64",), "riscv64-linux-gnu-gcc"),
}

#: LLVM ``mattr`` features -> the /proc/cpuinfo flag the host must show to run them.
CPU_FLAGS: dict[str, str] = {
    "+avx2": "avx2",
    "+fma": "fma",
    "+f16c": "f16c",
    "+avx512f": "avx512f",
    "+avx512cd": "avx512cd",
    "+avx512bw": "avx512bw",
    "+avx512dq": "avx512dq",
    "+avx512vl": "avx512vl",
    "+avx512vnni": "avx512_vnni",
}

BUILD_SH = string.Template("""#!/bin/sh
# Link the TVM kernels of this artifact into model.so on a machine with a $arch toolchain.
# tapeout wrote LLVM objects because no $cc was found when it compiled.
set -e
cd "$$(dirname "$$0")"
mkdir -p obj && tar -xf model.tar -C obj
$${CC:-$cc} -shared -fPIC -o model.so obj/*.o
echo "built model.so: load it with tvm.runtime.load_module and relax.VirtualMachine"
""")


@dataclass
class Exported:
    """What the export wrote, and whether this machine can run it."""

    library: str  # file name inside the artifact folder
    runnable: bool
    note: str


def tvm_target(target: Any) -> Any:
    """The ``tvm.target.Target`` of a tapeout CPU target (``num-cores`` from this host when it
    can run the code, so the thread pool and MetaSchedule agree)."""
    import tvm

    spec = dict(target.tvm_target())
    if not spec.get("mattr"):
        spec.pop("mattr", None)
    if spec.get("kind") == "llvm":
        spec["num-cores"] = host_cores() if host_can_run(target)[0] else target.cpu.cores
    return tvm.target.Target(spec)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Read once, at import: TVM's thread pool may later pin the main thread to one core.
_HOST_CORES = _affinity()


def host_cores() -> int:
    return _HOST_CORES


def _arch(target: Any) -> str:
    return str(target.cpu.mtriple).split("-")[0]


def host_can_run(target: Any) -> tuple[bool, str]:
    """Whether code for ``target`` runs here, and if not, why."""
    arch = _arch(target)
    machines = ARCHES.get(arch, ((arch,), ""))[0]
    if platform.machine() not in machines:
        return False, f"it is built for {arch} and this machine is {platform.machine()}"
    missing = [f for f in target.cpu.mattr if not _host_has(f)]
    if missing:
        return False, f"this CPU lacks {', '.join(missing)}"
    return True, ""


def _host_has(feature: str) -> bool:
    flag = CPU_FLAGS.get(feature)
    if flag is None or not Path("/proc/cpuinfo").exists():
        return True
    return flag in Path("/proc/cpuinfo").read_text().split()


def fuse(mod: Any, target: Any) -> Any:
    """Relax ops to TIR, constants folded, elementwise chains fused into their producers."""
    import tvm
    from tvm import relax

    passes = [
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ]
    with target:
        return tvm.transform.Sequential(passes)(mod)


def schedule(mod: Any, target: Any, params: Any, database: Any = None) -> Any:
    """Apply tuned schedules from ``database`` where it has them, our rules elsewhere."""
    from tvm import relax
    from tvm.s_tir import dlight

    from backends.tvm.schedules import default_rules

    with target:
        if database is not None:
            with database:
                mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        return dlight.ApplyDefaultSchedule(*default_rules(params))(mod)


#: ``exec_mode`` option -> what Relax's VM code generator emits for ``main``: bytecode that the
#: VM interprets instruction by instruction, or a compiled function (each kernel call and
#: allocation a direct call: an LLM decode step makes about two thousand of them).
EXEC_MODES = ("bytecode", "compiled")


def vm_pipeline(workspace: bool) -> Any:
    """Relax's default build pipeline (``relax.pipeline.default_build_pipeline`` of TVM 0.27),
    with ``backends.tvm.workspace.hoist_workspace`` after the memory planner when
    ``workspace``: the planned intermediates made once per loaded model, not per call."""
    import tvm
    from tvm.relax import backend, transform

    from backends.tvm.workspace import hoist_workspace

    passes = [
        backend.DispatchSampling(),
        backend.DispatchSortScan(),
        transform.LegalizeOps(),
        transform.RewriteDataflowReshape(),
        transform.ToNonDataflow(),
        transform.RemovePurityChecking(),
        transform.CallTIRRewrite(),
        transform.StaticPlanBlockMemory(),
        *([hoist_workspace()] if workspace else []),
        transform.RewriteCUDAGraph(),
        transform.LowerAllocTensor(),
        transform.KillAfterLastUse(),
        transform.LowerRuntimeBuiltin(),
        transform.ComputePrimValue(),
        transform.VMShapeLower(),
        transform.AttachGlobalSymbol(),
    ]
    return tvm.transform.Sequential(passes, name="tapeout_vm_pipeline")


def compile_module(
    mod: Any, target: Any, exec_mode: str = "bytecode", workspace: bool = False
) -> Any:
    import tvm
    from tvm import relax

    with tvm.transform.PassContext(opt_level=3):
        return relax.build(
            mod, target=target, exec_mode=exec_mode, relax_pipeline=vm_pipeline(workspace)
        )


def export(executable: Any, target: Any, out_dir: Path) -> Exported:
    """Write the compiled model into ``out_dir`` (see the module docstring)."""
    runnable, why = host_can_run(target)
    arch = _arch(target)
    native = platform.machine() in ARCHES.get(arch, ((arch,), ""))[0]
    if native:
        executable.export_library(str(out_dir / "model.so"))
        note = "" if runnable else f"model.so cannot run here: {why}"
        return Exported("model.so", runnable, note)
    cc = ARCHES.get(arch, ((), f"{arch}-linux-gnu-gcc"))[1]
    failure = ""
    if shutil.which(cc):
        from tvm.support import cc as tvm_cc

        try:
            executable.export_library(
                str(out_dir / "model.so"), fcompile=tvm_cc.cross_compiler(cc)
            )
            return Exported("model.so", False, f"cross-compiled with {cc}; it {why}")
        except RuntimeError as err:  # e.g. the compiler without its C library (crti.o)
            (out_dir / "model.so").unlink(missing_ok=True)
            last = [line for line in str(err).splitlines() if line.strip()]
            failure = f"{cc} failed to link ({last[0] if last else err}); "
            log.warning("tvm: %s falling back to LLVM objects", failure)
    executable.export_library(str(out_dir / "model.tar"))
    script = out_dir / "build.sh"
    script.write_text(BUILD_SH.substitute(arch=arch, cc=cc))
    script.chmod(0o755)
    with tarfile.open(out_dir / "model.tar") as tar:
        members = ", ".join(sorted(m.name for m in tar.getmembers()))
    missing = failure or f"no {cc} on this machine: "
    return Exported(
        "model.tar",
        False,
        f"{missing}wrote {arch} LLVM objects ({members}) to model.tar and "
        "build.sh to link them into model.so on the device",
    )


def configure_threads() -> None:
    """One TVM worker per core this process may use, not pinned to cores.

    Set before TVM's thread pool starts (it reads them once): by default the pool may start
    with a single thread, and pinning would bind the *main* thread to core 0, which every
    library started later in the process (onnxruntime, torch, MetaSchedule's workers) would
    inherit.
    """
    os.environ.setdefault("TVM_NUM_THREADS", str(host_cores()))
    os.environ.setdefault("TVM_BIND_THREADS", "0")
