"""What an object-store home costs: publish (upload) and pull (download + sha256 check) of an
artifact the size of Adult's transform (20 MiB in 12 files) and a step start with nothing new
(one listing), on moto's S3 server on loopback.

    .venv/bin/python benchmarks/bench_objstore.py     # writes benchmarks/results/objstore.{md,json}

Loopback moto measures our side (hashing, requests, file handling), not a network: a real bucket
adds its latency per request (about 3 + files requests per publish, 2 + files per pull).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
FILES, SIZE = 12, 20 * 2**20
ROUNDS = 3


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ.update({"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
                           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1"})
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        import boto3

        from pipelines import objstore, store

        boto3.client("s3").create_bucket(Bucket="bench")
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(ROUNDS):
                os.environ[objstore.CACHE_ENV] = f"{tmp}/writer{n}"
                objstore._MIRRORS.clear()
                home = store.resolve_home("s3://bench/home")
                payload = [os.urandom(SIZE // FILES) for _ in range(FILES)]
                w0, c0 = time.perf_counter(), _cpu()
                with store.publish(store.path(home, store.Kind.TRANSFORM, "p", f"t{n}")) as out:
                    for i, data in enumerate(payload):
                        (out / f"part-{i:02d}").write_bytes(data)
                    (out / "transform.json").write_text("{}")
                w1, c1 = time.perf_counter(), _cpu()
                os.environ[objstore.CACHE_ENV] = f"{tmp}/reader{n}"
                objstore._MIRRORS.clear()
                store.resolve_home("s3://bench/home")  # pulls every artifact published so far
                w2, c2 = time.perf_counter(), _cpu()
                store.resolve_home("s3://bench/home")  # nothing new
                w3, c3 = time.perf_counter(), _cpu()
                rows.append({"artifacts_pulled": n + 1, "publish_s": w1 - w0,
                             "publish_cpu_s": c1 - c0, "pull_s": w2 - w1, "pull_cpu_s": c2 - c1,
                             "idle_start_s": w3 - w2, "idle_start_cpu_s": c3 - c2})
    finally:
        server.terminate()
        server.wait()
    load = Path("/proc/loadavg").read_text().split()[:3]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "objstore.json").write_text(json.dumps({"rows": rows, "loadavg": load,
                                                       "artifact_bytes": SIZE}, indent=2) + "\n")
    lines = ["# Object-store home: publish and pull on moto (loopback)", "",
             f"Artifact: {SIZE / 2**20:.0f} MiB in {FILES + 1} files. Load average at the end: "
             f"{' '.join(load)} (2 cores shared with other engineers' runs: wall times inflate, "
             "CPU times less). Round n pulls n artifacts on a fresh mirror.", "",
             "| round | publish wall s | publish CPU s | pull wall s | pull CPU s | "
             "step start, nothing new, wall s |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['publish_s']:.2f} | {r['publish_cpu_s']:.2f} | "
                     f"{r['pull_s']:.2f} | {r['pull_cpu_s']:.2f} | {r['idle_start_s']:.3f} |")
    (RESULTS / "objstore.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
