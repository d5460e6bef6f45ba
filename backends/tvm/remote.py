"""A compiled TVM stage run on an RPC server: TVM's RPC moves the module and the tensors.

A pipeline stage may run on another machine through the same RPC servers tuning measures on
(``backends.tvm.rpc``): ``stage_devices=["local", "rpc://HOST:PORT/KEY"]`` asks the tracker at
HOST:PORT for a server registered under KEY, ``rpc://HOST:PORT`` connects to one server
directly. The stage's ``model.so`` is uploaded (``remote.upload``), loaded there
(``remote.load_module``) and run by a Relax VM on the remote CPU; inputs are copied to the
remote device and outputs back, so there is no new transport. The library must have been
built for the server's CPU (the stage's target file says which).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler.errors import BackendError
from compiler.interpreter import check_inputs
from compiler.ir.graph import Graph

log = logging.getLogger(__name__)

SCHEME = "rpc://"
#: Seconds to wait for the tracker to hand out a server (TVM's default retries for minutes).
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class RemoteAddress:
    """Where a stage runs: a server (``key`` None) or a tracker and the servers' key."""

    host: str
    port: int
    key: str | None

    def __str__(self) -> str:
        return f"{SCHEME}{self.host}:{self.port}" + (f"/{self.key}" if self.key else "")


def parse_address(device: str) -> RemoteAddress:
    """``rpc://HOST:PORT`` or ``rpc://HOST:PORT/KEY`` as a ``RemoteAddress``; anything else is
    a typed error showing both forms."""
    rest = device[len(SCHEME) :] if device.startswith(SCHEME) else ""
    where, _, key = rest.partition("/")
    host, sep, port = where.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in key:
        raise BackendError(
            f"stage device {device!r} is not 'local', rpc://HOST:PORT (an RPC server) or "
            "rpc://HOST:PORT/KEY (a tracker and the key its servers registered under)"
        )
    return RemoteAddress(host, int(port), key or None)


def connect(address: RemoteAddress) -> Any:
    """An RPC session on the server at ``address`` (or one the tracker hands out)."""
    import socket

    from tvm import rpc

    try:
        # TVM's own connect retries for a minute; a dead address should fail at once.
        socket.create_connection((address.host, address.port), timeout=5).close()
        if address.key is None:
            return rpc.connect(address.host, address.port)
        tracker = rpc.connect_tracker(address.host, address.port)
        return tracker.request(address.key, max_retry=CONNECT_TIMEOUT_S)
    except Exception as e:  # TVM raises RuntimeError/ConnectionError/socket errors alike
        raise BackendError(
            f"cannot open an RPC session at {address} ({type(e).__name__}: {e}); start a "
            "server with python -m tvm.exec.rpc_server [--tracker HOST:PORT --key KEY]"
        ) from None


class RemoteStage:
    """One compiled stage loaded on an RPC server; ``run`` moves the tensors there and back."""

    def __init__(self, graph: Graph, library: Path, address: RemoteAddress):
        from tvm import relax

        self.graph = graph
        self.address = address
        self.session = connect(address)
        try:
            self.session.upload(str(library))
            module = self.session.load_module(library.name)
            self.device = self.session.cpu()
            self.vm = relax.VirtualMachine(module, self.device)
        except Exception as e:  # TVM's RPC errors carry the remote traceback as text
            raise BackendError(
                f"{address} could not load {library.name}: {type(e).__name__}: "
                f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            ) from None
        log.info("stage @%s loaded on %s", graph.name, address)

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        import tvm

        args = [
            tvm.runtime.tensor(np.ascontiguousarray(a).reshape(a.shape), self.device)
            for a in check_inputs(self.graph, inputs)
        ]
        # A tuple cannot come back over RPC as one object: the VM's stateful calls fetch the
        # outputs one by one (TVM's documented way to run a Relax VM remotely).
        self.vm.set_input("main", *args)
        self.vm.invoke_stateful("main")
        outs = self.vm.get_outputs("main")
        outs = outs if isinstance(outs, list | tuple) else [outs]
        return [np.asarray(o.numpy()) for o in outs]
