"""Print failures and latency of requests sent through Traefik while the
generated script/deploy and script/rollback replace the Lucky service.

    python3 -m benchmarks.zero_downtime [RATE_PER_SECOND]

A local swarm is created if none runs (and left afterwards). Requests go to
https://127.0.0.1 with Host/SNI api.example.com, verified against the
harness's throwaway CA; the stream is bounded by the deploy's duration and a
hard cap of 20 000 requests. Goal: 0 failures of at least 1000 requests.
"""

import sys
import tempfile
import time
from pathlib import Path

from harness.stream import RequestStream
from harness.swarm import SHA1, SHA3, Swarm, prepare
from harness.wait import until
from kit import kit

CAP = 20_000
LIMIT = 1800  # seconds: longer than any deploy the stream measures
TAIL_SECONDS = 3  # requests keep flowing this long after the action returns


def measure(label, deployment, rate, action):
    """Run action() under a request stream; print the stream's figures and the action's time and exit code."""
    with RequestStream(deployment, rate=rate, cap=CAP, limit=LIMIT, timeout=5) as stream:
        started = time.perf_counter()
        outcome = action()
        action_seconds = time.perf_counter() - started
        time.sleep(TAIL_SECONDS)
        figures = stream.stop()
    print(f"{label}: " + " ".join(f"{k}={v}" for k, v in figures.items() if k != "events")
          + f" action_seconds={action_seconds:.1f} action_exit={outcome.returncode}", flush=True)


def main():
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 25.0
    with kit.images_for_run() as (mode, report), Swarm(), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report))
        deployment = prepare(Path(tmp), mode, releases=(SHA1, SHA3), fast=False)  # production intervals
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
