"""Service overhead and query throughput of the Redis deployment vs the embedded service.

    python bench/bench_redis.py overhead --mode redis --edits 100 --out runs/overhead-redis.json
    python bench/bench_redis.py overhead --mode embedded --edits 100 --out runs/overhead-embedded.json
    python bench/bench_redis.py throughput --replicas 0 --seconds 20 --out runs/qps-tiny-0.json
    python bench/bench_redis.py throughput --replicas 1 --seconds 20 --model smollm2 --out runs/qps-smol-1.json

Every server part runs in its own process (a redis-server, `factpatch api`, `factpatch worker`,
or `factpatch serve`), the client in this one. *Overhead*: one `POST /v1/edits?wait=30` at a
time; the writer process wraps `run_edit_group` with a timer (the worker's compute: validate,
edit, guard, commit) and the overhead is the client's latency minus that time, per edit.
*Throughput*: C client threads post `/v1/generate` (greedy, 8 new tokens) for T seconds, answered
by the writer alone or by the writer and replicas. Models: `tiny` (the test suite's 2-layer Llama,
built here) or `smollm2` (cached under --models-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from results_out import emit  # the script's folder is on sys.path

TIMINGS_ENV = "FP_BENCH_TIMINGS"
EDITORS = {"ft": {"steps": 1, "lr": 2e-2, "norm_constraint": 1.0, "layer_fraction": 0.0}}


# ---- inside the server processes ----------------------------------------------------------------


def timed_main(argv: list[str]) -> int:
    """`factpatch <argv>` with the writer's edit handler timed into $FP_BENCH_TIMINGS (JSON lines)."""
    import workers.writer as writer_module

    inner, path = writer_module.run_edit_group, os.environ[TIMINGS_ENV]

    def run_edit_group(ctx: Any, commands: list[Any]) -> None:
        start = time.perf_counter()
        try:
            inner(ctx, commands)
        finally:
            line = {"ids": [c.id for c in commands], "seconds": time.perf_counter() - start}
            with open(path, "a") as out:
                out.write(json.dumps(line) + "\n")

    writer_module.run_edit_group = run_edit_group  # type: ignore[assignment]
    from cli.main import main

    return main(argv)


# ---- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """The processes of one measurement; all stopped on exit."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, args: list[str], **extra: str) -> subprocess.Popen[bytes]:
        out = (self.folder / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env={**self.env, **extra}, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def factpatch(self, name: str, argv: list[str], **extra: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, __file__, "run", *argv], **extra)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_http(url: str, *, path: str = "/readyz", timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url}{path} not ready")


def wait_workers(url: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(url + "/v1/model", timeout=2)
        if response.status_code == 200:
            live = [w for w in response.json()["workers"] if w["role"] in ("writer", "replica")]
            if len(live) >= count and len({w["revision"] for w in live}) == 1:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{count} workers did not come up")


@contextmanager
def stack(args: argparse.Namespace, *, mode: str, replicas: int = 0) -> Iterator[tuple[str, Path]]:
    """Start the service in `mode` (redis: redis-server + api + writer + replicas; embedded: serve)."""
    folder = Path(tempfile.mkdtemp(prefix="fp-bench-"))
    model = str(build_tiny(folder)) if args.model == "tiny" else "smollm2-135m-instruct"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTPATCH_")}
    env.update(FACTPATCH_MODEL=model, FACTPATCH_MODELS_DIR=args.models_dir, FACTPATCH_DATA_DIR=str(folder / "data"),
               FACTPATCH_EDITOR="ft", FACTPATCH_EDITORS=json.dumps(EDITORS), FACTPATCH_PORT=str(port),
               FACTPATCH_GUARD__ENABLED="false", FACTPATCH_LOG_LEVEL="WARNING")
    env[TIMINGS_ENV] = str(folder / "timings.jsonl")
    if args.database_url:
        env["FACTPATCH_DATABASE_URL"] = args.database_url
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    run = Stack(folder, env)
    try:
        if mode == "embedded":
            run.factpatch("serve", ["serve"])
        else:
            redis_port = free_port()
            run.spawn("redis", [shutil.which("redis-server") or "redis-server", "--port", str(redis_port),
                                "--save", "", "--appendonly", "no"])
            run.env["FACTPATCH_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            run.factpatch("api", ["api"])
            run.factpatch("writer", ["worker", "--role", "writer"], FACTPATCH_WORKER_ID="writer-1")
            for i in range(replicas):
                run.factpatch(f"replica-{i}", ["worker", "--role", "replica"], FACTPATCH_WORKER_ID=f"replica-{i}")
        url = f"http://127.0.0.1:{port}"
        wait_http(url)
        wait_workers(url, 1 + replicas)
        yield url, folder
    finally:
        run.stop()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def build_tiny(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.tiny import save_tiny

    return save_tiny(folder / "tiny-model")


# ---- measurements ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"p50_ms": round(pct(ms, 0.5), 2), "p90_ms": round(pct(ms, 0.9), 2), "p99_ms": round(pct(ms, 0.99), 2),
            "mean_ms": round(statistics.fmean(ms), 2), "n": len(ms)}


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    with stack(args, mode=args.mode) as (url, folder), httpx.Client(base_url=url, timeout=60) as client:
        latencies: dict[str, float] = {}
        for i in range(args.warmup + args.edits):
            body = {"prompt": f"Benchmark fact {i} is", "target": f" value {i % 9}"}
            start = time.perf_counter()
            response = client.post("/v1/edits?wait=30", json=body)
            elapsed = time.perf_counter() - start
            doc = response.json()
            assert response.status_code == 200 and doc["status"] == "applied", response.text
            if i >= args.warmup:
                latencies[doc["id"]] = elapsed
        compute = _compute_times(folder / "timings.jsonl")
        over = [latencies[i] - compute[i] for i in latencies]
        return {"mode": args.mode, "model": args.model, "edits": args.edits, "log": args.database_url or "sqlite",
                "client_latency": summary(list(latencies.values())),
                "worker_compute": summary([compute[i] for i in latencies]),
                "overhead": summary(over)}


def _compute_times(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        assert len(record["ids"]) == 1, "edits were batched; run them one at a time"
        out[record["ids"][0]] = record["seconds"]
    return out


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    mode = "embedded" if args.replicas < 0 else "redis"
    with stack(args, mode=mode, replicas=max(args.replicas, 0)) as (url, _):
        done: list[float] = []
        errors: list[int] = []
        stop_at = time.monotonic() + args.warmup_seconds + args.seconds
        counting_from = time.monotonic() + args.warmup_seconds
        lock = threading.Lock()

        def client_loop(k: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                i = 0
                while time.monotonic() < stop_at:
                    start = time.perf_counter()
                    response = client.post("/v1/generate", json={"prompt": f"Question {k}-{i}: the capital of",
                                                                 "max_new_tokens": 8})
                    i += 1
                    with lock:
                        if time.monotonic() >= counting_from:
                            (done.append(time.perf_counter() - start) if response.status_code == 200
                             else errors.append(response.status_code))

        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"model": args.model, "workers": "embedded" if mode == "embedded" else f"writer+{args.replicas}",
                "concurrency": args.concurrency, "seconds": args.seconds, "threads": args.threads or "default",
                "queries_per_s": round(len(done) / args.seconds, 2), "latency": summary(done) if done else {},
                "errors": len(errors)}


# ---- command line ---------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        return timed_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("overhead", "throughput"):
        p = sub.add_parser(name)
        p.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
        p.add_argument("--models-dir", default="/tmp/fpdata/models")
        p.add_argument("--database-url", default=None, help="postgresql://… (default: SQLite in a temp dir)")
        p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
        p.add_argument("--keep", action="store_true", help="keep the temp folder (process logs)")
        p.add_argument("--out", type=Path, default=None)
    sub.choices["overhead"].add_argument("--mode", choices=("redis", "embedded"), default="redis")
    sub.choices["overhead"].add_argument("--edits", type=int, default=100)
    sub.choices["overhead"].add_argument("--warmup", type=int, default=5)
    sub.choices["throughput"].add_argument("--replicas", type=int, default=0, help="-1: embedded serve")
    sub.choices["throughput"].add_argument("--seconds", type=float, default=20.0)
    sub.choices["throughput"].add_argument("--warmup-seconds", type=float, default=3.0)
    sub.choices["throughput"].add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    result = overhead(args) if args.what == "overhead" else throughput(args)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
