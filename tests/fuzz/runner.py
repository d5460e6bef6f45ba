"""Run fuzz cases in worker processes: a crash (a signal) or a hang is an outcome, not the end.

``generate(n, seed, seeds, folder)`` writes ``n`` mutated models, each in a folder of its own
(external data files beside it); ``Runner(target).run(case)`` sends one to the worker and
returns its outcome, restarting the worker after a crash or a timeout.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from tests.fuzz.mutate import mutate

REPO = Path(__file__).parents[2]
ZOO_SHARE = 1 / 3


@dataclass
class Case:
    index: int
    seed_model: str
    mutations: list[str]
    path: Path


@dataclass
class Result:
    case: Case
    outcome: str  # ok, typed, too-big, raw, crash, hang
    type: str = ""
    message: str = ""
    where: list[str] = field(default_factory=list)


def generate(n: int, seed: int, seeds: list[tuple[str, bytes]], folder: Path,
             start: int = 0) -> list[Case]:
    """``n`` mutated models; case ``i`` depends only on ``seed`` and ``i``. A third of the
    cases start from a zoo model (names ``zoo_*``): they are few, but only they carry real
    initializers and deep graphs."""
    cases = []
    parsed: dict[str, onnx.ModelProto] = {}
    zoo = [s for s in seeds if s[0].startswith("zoo_")]
    nodes = [s for s in seeds if not s[0].startswith("zoo_")] or zoo
    for index in range(start, start + n):
        rng = random.Random(seed * 1_000_003 + index)
        pool = zoo if zoo and rng.random() < ZOO_SHARE else nodes
        name, data = pool[rng.randrange(len(pool))]
        if name not in parsed:
            parsed[name] = onnx.load_from_string(data)
        case_dir = folder / f"case{index:06d}" / "model"
        case_dir.mkdir(parents=True)
        model, applied = mutate(parsed[name], rng, case_dir)
        path = case_dir / "model.onnx"
        path.write_bytes(model.SerializeToString())
        cases.append(Case(index, name, applied, path))
    return cases


class Runner:
    """One worker process for ``target``; restarted after a crash or a hang."""

    def __init__(self, target: str, timeout: float = 60.0, run: bool = True,
                 env: dict[str, str] | None = None):
        self.target, self.timeout, self.execute = target, timeout, run
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fuzz.worker"], cwd=REPO, env=self.env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self.proc

    def run(self, case: Case) -> Result:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        request = {"model": str(case.path), "target": self.target, "run": self.execute}
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            return self._died(case)
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(self.timeout)
        if not ready:
            self.close()
            return Result(case, "hang", message=f"no answer in {self.timeout:.0f} s")
        line = proc.stdout.readline()
        if not line:
            return self._died(case)
        answer: dict[str, Any] = json.loads(line)
        return Result(case, answer["outcome"], answer.get("type", ""),
                      answer.get("message", ""), answer.get("where", []))

    def _died(self, case: Case) -> Result:
        assert self.proc is not None
        code = self.proc.wait()
        self.proc = None
        return Result(case, "crash", "signal" if code < 0 else "exit", f"worker exit {code}")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def summarize(results: list[Result]) -> str:
    """Counts by outcome, then each raw error, crash and hang with its case."""
    counts = Counter(r.outcome for r in results)
    lines = ["outcome   count"] + [f"{k:<9} {counts.get(k, 0):>5}"
                                   for k in ("ok", "typed", "too-big", "raw", "crash", "hang")]
    bad = [r for r in results if r.outcome in ("raw", "crash", "hang")]
    kinds = Counter(_kind(r) for r in bad)
    for kind, count in kinds.most_common():
        example = next(r for r in bad if _kind(r) == kind)
        lines.append(f"  {count:>4} x {kind}: {example.message[:160]!r} "
                     f"(case {example.case.index}: {example.case.seed_model} "
                     f"+ {','.join(example.case.mutations)})")
    return "\n".join(lines)


def _kind(r: Result) -> str:
    return f"{r.outcome} {r.type} at {' < '.join(reversed(r.where)) or '?'}"
