"""Tuning through TVM's RPC tracker: a tracker and two servers on loopback, a handful of trials.

Everything listens on 127.0.0.1 only, on ports the OS hands out, and every process is stopped
at the end of the module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from compiler import api
from compiler.errors import BackendError
from compiler.interpreter import interpret
from compiler.ir import Graph, TensorType

pytestmark = [pytest.mark.tvm, pytest.mark.slow]

KEY = "tapeout-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server forks; the whole group is stopped at the end
    )


def _servers_up(port: int, want: int, seconds: float = 60) -> bool:
    from tvm import rpc

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            info = rpc.connect_tracker("127.0.0.1", port).summary()
            if sum(s["key"] == f"server:{KEY}" for s in info["server_info"]) >= want:
                return True
        except Exception:
            pass
        time.sleep(0.5)
    return False


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def tracker() -> Iterator[tuple[int, list[subprocess.Popen]]]:
    pytest.importorskip("tvm")
    port = _free_port()
    procs = [
        _spawn(
            "tvm.exec.rpc_tracker",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
        )
    ]
    try:
        for _ in range(2):
            first = _free_port()
            procs.append(
                _spawn(
                    "tvm.exec.rpc_server",
                    "--tracker",
                    f"127.0.0.1:{port}",
                    "--key",
                    KEY,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(first),
                    "--port-end",
                    str(first + 50),
                )
            )
        if not _servers_up(port, 2):
            pytest.skip("the RPC tracker and servers did not come up within 60 s")
        yield port, procs
    finally:
        for proc in procs:
            _stop(proc)


def _graph() -> Graph:
    rng = np.random.default_rng(5)
    g = Graph("rpc_dense")
    x = g.add_input("x", TensorType("f32", (4, 32)))
    w = g.add_const("w", rng.standard_normal((24, 32)).astype(np.float32))
    b = g.add_const("b", rng.standard_normal(24).astype(np.float32))
    g.outputs = [g.add_node("nn.dense", [x, w, b], {"act": "relu"}).output]
    return g


def test_tuning_through_the_tracker_lands_in_the_database(
    tracker: tuple[int, list[subprocess.Popen]], tmp_path: Path
) -> None:
    port, _ = tracker
    art = api.compile(
        _graph(),
        "cpu",
        pipeline=[],
        tune=4,
        cache_dir=str(tmp_path / "cache"),
        tune_progress=False,
        rpc_tracker=f"127.0.0.1:{port}",
        rpc_key=KEY,
    )
    folder = art.tune_cache  # type: ignore[attr-defined]
    records = [
        json.loads(line)
        for p in folder.glob("*tuning_record*")
        for line in p.read_text().splitlines()
        if line.strip()
    ]
    # The seed record from our own rule plus the candidates the servers timed.
    assert art.timings["tune_trials_this_run"] >= 2
    assert len(records) >= 1 + art.timings["tune_trials_this_run"] // 2
    x = np.random.default_rng(1).standard_normal((4, 32)).astype(np.float32)
    np.testing.assert_allclose(art.run(x)[0], interpret(art.graph, x)[0], rtol=1e-4, atol=1e-4)


def test_a_key_with_no_server_is_a_typed_error_before_tuning(
    tracker: tuple[int, list[subprocess.Popen]], tmp_path: Path
) -> None:
    port, _ = tracker
    with pytest.raises(BackendError, match="no server for key 'nobody'"):
        api.compile(
            _graph(),
            "cpu",
            pipeline=[],
            tune=2,
            cache_dir=str(tmp_path),
            tune_progress=False,
            rpc_tracker=f"127.0.0.1:{port}",
            rpc_key="nobody",
        )
    assert not any(tmp_path.iterdir())  # refused before any tuning work


def test_a_tracker_that_does_not_answer_is_a_typed_error(tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    with pytest.raises(BackendError, match="does not answer"):
        api.compile(
            _graph(),
            "cpu",
            pipeline=[],
            tune=2,
            cache_dir=str(tmp_path),
            tune_progress=False,
            rpc_tracker=f"127.0.0.1:{_free_port()}",
            rpc_key=KEY,
        )


@pytest.mark.parametrize("address", ["localhost", "host:port", "h:0", ":9190"])
def test_malformed_tracker_addresses(address: str) -> None:
    from backends.tvm.rpc import parse_tracker

    with pytest.raises(BackendError, match="HOST:PORT"):
        parse_tracker(address, KEY)
