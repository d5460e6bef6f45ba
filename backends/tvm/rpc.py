"""Tuning on TVM's RPC tracker: MetaSchedule measures candidates on remote servers.

``compile(..., tune=N, rpc_tracker="host:port", rpc_key="name")`` (``--rpc-tracker``,
``--rpc-key``) hands the candidates MetaSchedule proposes to a pool of local builder processes
and then to every RPC server registered with the tracker under ``rpc_key``; each server times
the candidates it is given. The records land in the same tuning database as a local run
(``backends.tvm.tune``), so a later compile, local or remote, reuses them.

The tracker and servers are TVM's own::

    python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190
    python -m tvm.exec.rpc_server --tracker HOST:9190 --key zen5 --port 9300 --port-end 9400

(one server per measuring machine, or per core set to measure on). Before tuning starts the
tracker is asked whether it answers and how many servers hold the key: none is a typed error,
not a hang. A server that dies mid-run costs only the candidates it was timing: MetaSchedule
records them as failed runs and goes on with the other servers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from compiler.errors import BackendError

log = logging.getLogger(__name__)

#: Seconds a server may take for one candidate batch before its session is given up. A
#: candidate that runs longer than this is recorded as failed, never waited on forever.
SESSION_TIMEOUT_S = 60
#: Seconds one candidate's build may take in the builder pool. MetaSchedule's 30 s default
#: fails every build on a loaded 2-core machine (a fresh worker imports TVM first), and a
#: failed build never reaches a server.
BUILD_TIMEOUT_S = 180


@dataclass(frozen=True)
class Tracker:
    """Where the tracker listens and which key's servers measure."""

    host: str
    port: int
    key: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (key {self.key!r})"


def parse_tracker(address: str, key: str | None) -> Tracker:
    """``"host:port"`` and a key as a ``Tracker``; a malformed address is a typed error."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BackendError(f"rpc_tracker {address!r} is not HOST:PORT (for example 127.0.0.1:9190)")
    if not key:
        raise BackendError(
            "rpc_tracker needs rpc_key: the key the RPC servers registered under "
            "(python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY)"
        )
    return Tracker(host, int(port), str(key))


def free_servers(tracker: Tracker) -> int:
    """How many servers the tracker holds for the key; a typed error if it does not answer
    or holds none, so tuning never waits on a queue no server will take."""
    import socket

    from tvm import rpc

    try:
        # TVM's own connect retries for a minute; a dead address should fail at once.
        socket.create_connection((tracker.host, tracker.port), timeout=5).close()
        summary = rpc.connect_tracker(tracker.host, tracker.port).summary()
    except Exception as e:  # TVM raises RuntimeError/ConnectionError/socket errors alike
        raise BackendError(
            f"the RPC tracker at {tracker.host}:{tracker.port} does not answer "
            f"({type(e).__name__}: {e}); start it with "
            f"python -m tvm.exec.rpc_tracker --host {tracker.host} --port {tracker.port}"
        ) from None
    servers = [s for s in summary.get("server_info", []) if s.get("key") == f"server:{tracker.key}"]
    if not servers:
        known = sorted(
            {str(s.get("key", "")).removeprefix("server:") for s in summary.get("server_info", [])}
        )
        raise BackendError(
            f"the RPC tracker at {tracker.host}:{tracker.port} has no server for key "
            f"{tracker.key!r} (it has {known or 'none'}); start one with python -m "
            f"tvm.exec.rpc_server --tracker {tracker.host}:{tracker.port} --key {tracker.key}"
        )
    return len(servers)


def builder_and_runner(tracker: Tracker, servers: int) -> tuple[Any, Any]:
    """MetaSchedule's process-pool builder and its RPC runner, one worker per server."""
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.RPCConfig(
        tracker_host=tracker.host,
        tracker_port=tracker.port,
        tracker_key=tracker.key,
        session_timeout_sec=SESSION_TIMEOUT_S,
    )
    # The same timing as the in-process runner (backends.tvm.measure), so records from a
    # remote run and a local one are comparable in one database.
    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=2, min_repeat_ms=40)
    runner = ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, max_workers=servers)
    builder = ms.builder.LocalBuilder(max_workers=max(servers, 1), timeout_sec=BUILD_TIMEOUT_S)
    log.info("tuning through the RPC tracker at %s with %d server(s)", tracker, servers)
    return builder, runner
