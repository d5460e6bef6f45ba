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
from typing import Any

import numpy as np
import pytest

from compiler import api
from compiler.errors import BackendError
from compiler.interpreter import interpret
from compiler.ir import Graph
from tests.backends.ir_text import graph_from_text

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


def _servers_up(port: int, want: int, seconds: float = 60, key: str = KEY) -> bool:
    from tvm import rpc

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            info = rpc.connect_tracker("127.0.0.1", port).summary()
            if sum(s["key"] == f"server:{key}" for s in info["server_info"]) >= want:
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


def _server(tracker_port: int, key: str = KEY) -> subprocess.Popen:
    first = _free_port()
    return _spawn(
        "tvm.exec.rpc_server",
        "--tracker",
        f"127.0.0.1:{tracker_port}",
        "--key",
        key,
        "--host",
        "127.0.0.1",
        "--port",
        str(first),
        "--port-end",
        str(first + 50),
    )


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
        procs += [_server(port) for _ in range(2)]
        if not _servers_up(port, 2):
            pytest.skip("the RPC tracker and servers did not come up within 60 s")
        yield port, procs
    finally:
        for proc in procs:
            _stop(proc)


def _graph() -> Graph:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((24, 32)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    return graph_from_text(
        """
        graph @rpc_dense(%x: f32[4,32]) -> (f32[4,24]) {
          %w: f32[24,32] = const @w
          %b: f32[24] = const @b
          %dense: f32[4,24] = nn.dense(%x, %w, %b) {act="relu"}
          return %dense
        }
        """,
        {"w": w, "b": b},
    )


def _records(folder: Path) -> list[list]:
    return [
        json.loads(line)
        for p in folder.glob("*tuning_record*")
        for line in p.read_text().splitlines()
        if line.strip()
    ]


def test_tuning_through_the_tracker_survives_a_server_dying_mid_run(
    tracker: tuple[int, list[subprocess.Popen]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tvm.s_tir.meta_schedule.runner import RPCRunner

    port, _ = tracker
    key = "tapeout-dies"
    servers = [_server(port, key) for _ in range(2)]
    killed: list[int] = []
    submit = RPCRunner._cls.run

    def submit_then_kill(runner: Any, inputs: list) -> list:
        # The first batch of candidates is handed to the runner's workers, which are opening
        # sessions on the servers: one server dies with its candidates in flight.
        futures = submit(runner, inputs)
        if not killed:
            os.killpg(servers[0].pid, signal.SIGKILL)
            killed.append(servers[0].pid)
        return futures

    monkeypatch.setattr(RPCRunner._cls, "run", submit_then_kill)
    try:
        assert _servers_up(port, 2, key=key), "the two servers did not register"
        art = api.compile(
            _graph(),
            "cpu",
            pipeline=[],
            tune=4,
            cache_dir=str(tmp_path / "cache"),
            tune_progress=False,
            rpc_tracker=f"127.0.0.1:{port}",
            rpc_key=key,
        )
    finally:
        for server in servers:
            _stop(server)
    assert killed, "tuning never handed candidates to the runner"
    # The records landed in the database, where a later compile finds them.
    records = _records(art.tune_cache)  # type: ignore[attr-defined]
    timed = [r for r in records if _timed(r)]
    trials = int(art.timings["tune_trials_this_run"])
    assert trials >= 4  # the budget was spent: tuning went on with the surviving server
    # Only the candidates in flight on the dead server are lost (one session per server at a
    # time: at most the runner's two workers' worth); the seed and the rest were timed.
    assert len(timed) >= 1 + trials - 2
    x = np.random.default_rng(2).standard_normal((4, 32)).astype(np.float32)
    np.testing.assert_allclose(art.run(x)[0], interpret(art.graph, x)[0], rtol=1e-4, atol=1e-4)


def _timed(record: list) -> bool:
    """A tuning record with real run times (a failed run has none, or MetaSchedule's 1e10)."""
    secs = record[1][1] if len(record) > 1 and len(record[1]) > 1 else None
    return bool(secs) and all(0 < float(t) < 1e9 for t in secs)


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


def test_a_pipeline_stage_runs_on_an_rpc_server(
    tracker: tuple[int, list[subprocess.Popen]], tmp_path: Path
) -> None:
    from tests.cases import get_case

    port, procs = tracker
    case = get_case("digits_cnn")
    model, example = case.build(), case.example_inputs()
    single = api.compile(model, "cpu", example_inputs=example, output_dir=tmp_path / "one")
    staged = api.compile(
        model,
        "cpu",
        example_inputs=example,
        output_dir=tmp_path / "two",
        pipeline_stages=2,
        stage_devices=["local", f"rpc://127.0.0.1:{port}/{KEY}"],
    )
    rng = np.random.default_rng(4)
    batches = [(rng.random((1, 1, 8, 8), dtype=np.float32),) for _ in range(4)]
    outs = staged.run_pipelined(batches)  # type: ignore[attr-defined]
    assert staged.summary["pipeline"]["stage_devices"][1].startswith("rpc://")
    for (x,), got in zip(batches, outs, strict=True):
        want = single.run(x)[0]
        np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)
        # the same artifact run in order, its second stage on the server again
        np.testing.assert_allclose(staged.run(x)[0], want, rtol=1e-5, atol=1e-5)
    # reloaded, the artifact keeps its placement
    again = api.load(tmp_path / "two")
    assert again.stage_devices == staged.stage_devices  # type: ignore[attr-defined]


def test_malformed_stage_devices_are_typed_errors() -> None:
    from compiler.multi import check_stage_devices

    with pytest.raises(BackendError, match="rpc://HOST:PORT/KEY"):
        check_stage_devices(["local", "tcp://h:1"], 2)
    with pytest.raises(BackendError, match="2 devices for 3 stages"):
        check_stage_devices("local,rpc://127.0.0.1:9190/k", 3)
