"""A bounded stream of requests through Traefik, for the zero-downtime figures of the swarm benchmarks and
the cluster tier: failures, latency percentiles, and when marked events happened."""

import threading
import time

from harness.wait import until


class RequestStream:
    """GET api.<domain>/version through Traefik (`deployment.get`) at `rate` per second in a thread, bounded
    by `cap` requests and `limit` seconds; `stop()` ends it and returns the figures."""

    def __init__(self, deployment, rate=20.0, cap=12_000, limit=600.0, timeout=10):
        self.deployment, self.rate, self.cap, self.limit, self.timeout = deployment, rate, cap, limit, timeout
        self.results = []  # (ok, seconds, status or error, seconds into the stream when sent)
        self.events = []  # (what, seconds into the stream)
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.started = time.perf_counter()
        self._thread.start()
        until(lambda: len(self.results) >= self.rate, 30, "one second of requests")
        return self

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        session = self.deployment.session()
        next_at = self.started
        while not self._stop.is_set() and len(self.results) < self.cap and time.perf_counter() - self.started < self.limit:
            t = time.perf_counter()
            try:
                answer = self.deployment.get("api", "/version", session=session, timeout=self.timeout)
                outcome = (answer.status_code == 200, answer.status_code)
            except Exception as error:  # noqa: BLE001 - a failed request is a data point
                outcome = (False, type(error).__name__)
            self.results.append((outcome[0], time.perf_counter() - t, outcome[1], t - self.started))
            next_at += 1.0 / self.rate
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def mark(self, event):
        """Note when event happened (seconds into the stream), for the figures."""
        self.events.append((event, round(time.perf_counter() - self.started, 1)))

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.figures()

    def figures(self):
        latencies = sorted(r[1] for r in self.results) or [0.0]
        failures = [(r[2], round(r[3], 1)) for r in self.results if not r[0]]

        def pct(p):
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
        return {"requests": len(self.results), "failures": len(failures), "p50_ms": round(pct(0.50), 1),
                "p99_ms": round(pct(0.99), 1), "max_ms": round(latencies[-1] * 1000, 1),
                "seconds": round(time.perf_counter() - self.started, 1), "events": self.events,
                "failed (what, when)": failures[:10]}
