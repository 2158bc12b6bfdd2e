"""Print failures and latency of requests sent through Traefik while the
generated script/deploy and script/rollback replace the Lucky service.

    python benchmarks/zero_downtime.py [RATE_PER_SECOND]

A local swarm is created if none runs (and left afterwards). Requests go to
https://127.0.0.1 with Host/SNI api.example.com, verified against the
harness's throwaway CA; the stream is bounded by the deploy's duration and a
hard cap of 20 000 requests. Goal: 0 failures of at least 1000 requests.
"""

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness.swarm import SHA1, SHA3, Swarm, prepare  # noqa: E402
from tests.harness.wait import until  # noqa: E402
from tests.images import kit  # noqa: E402

CAP = 20_000
TAIL_SECONDS = 3  # requests keep flowing this long after the action returns


def stream(deployment, stop, rate, results):
    session = deployment.session()
    interval = 1.0 / rate
    next_at = time.perf_counter()
    while not stop.is_set() and len(results) < CAP:
        start = time.perf_counter()
        try:
            answer = deployment.get("api", "/version", session=session, timeout=5)
            ok = answer.status_code == 200
        except Exception:  # noqa: BLE001 - a failed request is a data point
            ok = False
        results.append((ok, time.perf_counter() - start))
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))


def measure(label, deployment, rate, action):
    stop, results = threading.Event(), []
    worker = threading.Thread(target=stream, args=(deployment, stop, rate, results))
    worker.start()
    until(lambda: len(results) >= rate, 30, "one second of requests before the action")
    started = time.perf_counter()
    outcome = action()
    time.sleep(TAIL_SECONDS)
    stop.set()
    worker.join()
    latencies = sorted(seconds for _, seconds in results)
    failures = sum(1 for ok, _ in results if not ok)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(f"{label}: requests={len(results)} failures={failures} p50_ms={pct(0.50):.1f} p99_ms={pct(0.99):.1f} "
          f"action_seconds={time.perf_counter() - started - TAIL_SECONDS:.1f} action_exit={outcome.returncode}", flush=True)


def main():
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 25.0
    with kit.images_for_run() as (mode, report), Swarm(), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report))
        deployment = prepare(Path(tmp), mode, releases=(SHA1, SHA3))
        try:
            first = deployment.first_deploy(SHA1)
            print("\n".join(deployment.notes))
            print(f"first deploy exit={first.returncode}")
            # Traefik polls swarm every few seconds: measure only once it serves SHA1.
            until(lambda: deployment.settled(SHA1), 120, f"Traefik to serve {SHA1} with every replica running")
            measure(f"deploy {SHA3}", deployment, rate, lambda: deployment.deploy(SHA3, check=False))
            measure(f"rollback {SHA1}", deployment, rate, lambda: deployment.rollback(SHA1, check=False))
        finally:
            deployment.close()


if __name__ == "__main__":
    main()
