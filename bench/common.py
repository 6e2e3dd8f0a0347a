"""Benchmark plumbing shared by bench/*.py: run a contender in its own process, time it, read
its peak RSS, print tables.

Each contender is a plain function `f(**kwargs) -> dict` in some module. `run_isolated` starts
`python -m bench.common module:function '<json kwargs>' RESULT_PATH` as a fresh process, so one
contender's memory (DuckDB buffers, Python heap) never counts against another, and the peak RSS
is the kernel's own number for that process (`wait4` rusage `ru_maxrss`, which covers native
allocations as well as Python's).

The function times its own work and returns at least `{"seconds": s, "records": n, "bytes": b}`
(imports and data set-up stay outside the timing); anything else it returns lands in
`Measurement.detail`.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 1_000_000
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Measurement:
    name: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # user + system CPU of the timed work (all threads)
    records: int = 0
    bytes: int = 0
    peak_rss: int = 0  # bytes, whole process
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.ok and self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.ok and self.seconds else 0.0


def cpu_time() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU time of a block: `with Clock() as clock: ...; clock.seconds`."""

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), cpu_time()
        self.seconds = self.cpu_seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = cpu_time() - self._cpu

    def report(self) -> dict[str, float]:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds}


class Phases:
    """Named phases inside a contender: `with phases("read"): ...`, in wall seconds and in
    the process's CPU seconds (all threads; the phases run one at a time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started, cpu = time.perf_counter(), cpu_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu_time() - cpu

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def run_isolated(
    name: str,
    target: str,
    kwargs: dict[str, Any],
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> Measurement:
    """Run `target` ("module:function") in a new Python process; never raises for its failure."""
    with tempfile.TemporaryDirectory(prefix="courier-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        log_path = Path(tmp) / "stderr.log"
        cmd = [sys.executable, "-m", "bench.common", target, json.dumps(kwargs), str(result_path)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(  # reaped below with wait4, for its rusage
                cmd,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
            status, rusage = _wait(proc.pid, timeout)
            proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else -9
        measurement = Measurement(name, peak_rss=rusage.ru_maxrss * 1024 if rusage else 0)
        if status is None:
            measurement.error = f"timed out after {timeout:.0f} s"
        elif result_path.exists():
            out = json.loads(result_path.read_text())
            if "error" in out:
                measurement.error = out["error"]
            else:
                # the child's own peak when it said it (wait4's starts at this process's)
                measurement.peak_rss = int(out.pop("peak_rss", measurement.peak_rss))
                measurement.seconds = float(out.pop("seconds"))
                measurement.cpu_seconds = float(out.pop("cpu_seconds", 0.0))
                measurement.records = int(out.pop("records"))
                measurement.bytes = int(out.pop("bytes"))
                measurement.detail = out
        else:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            measurement.error = f"exit {proc.returncode}: " + " | ".join(tail)
        return measurement


def _wait(pid: int, timeout: float | None) -> tuple[int | None, Any]:
    if timeout is None:
        _, status, rusage = os.wait4(pid, 0)
        return status, rusage
    deadline = time.monotonic() + timeout
    while True:
        done, status, rusage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, rusage
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, _, rusage = os.wait4(pid, 0)
            return None, rusage
        time.sleep(0.05)


def resolve(target: str) -> Callable[..., dict[str, Any]]:
    module, _, function = target.partition(":")
    fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), function)
    return fn


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (first column left, the rest right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def human_rate(n: float) -> str:
    return f"{n:,.0f}"


def human_mb(n: int) -> str:
    return f"{n / MB:,.0f} MB"


def main(argv: list[str]) -> int:
    target, kwargs, result_path = argv[0], json.loads(argv[1]), Path(argv[2])
    try:
        out = resolve(target)(**kwargs)
    except Exception as exc:  # reported in the table, never hidden
        result_path.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        raise
    out["peak_rss"] = peak_rss()
    result_path.write_text(json.dumps(out, default=str))
    return 0


def peak_rss() -> int:
    """This process's peak RSS in bytes, with the helper processes it waited for. Not
    ru_maxrss of RUSAGE_SELF: Linux starts that at the parent's peak (taken over at exec), so
    a contender spawned by a bench that once held 1.4 GB would report 1.4 GB."""
    own = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            own = int(line.split()[1]) * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return max(own, children)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
