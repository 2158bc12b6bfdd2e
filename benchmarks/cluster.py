"""Print how long a three-node swarm in containers takes to form, to take the project's first deploy,
and to recover from a worker lost at once (its engine killed, not drained).

    python3 -m benchmarks.cluster [RATE_PER_SECOND] [--dial-timeout SECONDS]

--dial-timeout renders the project with another Traefik serversTransport dialTimeout than the
template's 2 s (harness/cluster.py traefik_dial_timeout), in the benchmark's tmp dir only;
30 is Traefik's default.

Everything lives in `lhd-cluster-<id>-...` containers, volumes and a network, removed at the end
(harness/cluster.py). Requests go from the host to the manager's published HTTPS port (a free
high port on 127.0.0.1), Host/SNI api.example.com, bounded by RequestStream's cap and time limit.

Figures:
  form_s      network, registry and three engines up, swarm formed, every node Ready
  images_s    project images loaded into the manager and pushed to the registry, Docker Hub images
              preloaded (local mode), project copied in (the host build is cached by content hash
              and not counted; build_s says when it ran)
  deploy_s    script/bootstrap --swarm + script/deploy --first on the manager until Traefik serves
              the release from every replica (workers pull from the registry meanwhile)
  down_s      worker killed -> the manager marks it Down
  recover_s   worker killed -> lucky and hasura run every replica on the nodes left
  requests, failures, p50/p99/max latency of the stream during the loss
"""

import sys
import tempfile
import time
from pathlib import Path

from harness.cluster import APP_REPLICAS, Cluster, ClusterDeployment, build_images, traefik_dial_timeout
from harness.wait import until
from kit import kit


def recover(deployment, worker, rate):
    """Kill worker under a request stream; return the timings and the stream's figures."""
    c = deployment.cluster

    def rescheduled():
        # A dead node cannot report its tasks stopped: swarm keeps listing them as running (and
        # `service ls` counts them, 4/3), so count only the tasks on the nodes left.
        alive = {s: sum(n for node, n in deployment.task_nodes(s).items() if node != worker) for s in APP_REPLICAS}
        return alive == APP_REPLICAS
    with deployment.stream(rate) as stream:
        killed = time.perf_counter()
        c.kill(worker)
        until(lambda: c.nodes_status()[worker][0] == "Down", 180, f"the manager to mark {worker} Down")
        down = time.perf_counter() - killed
        until(rescheduled, 300, lambda: f"the tasks of {worker} to run elsewhere:\n{deployment.service_table()}")
        recovered = time.perf_counter() - killed
        seen = len(stream.results)
        until(lambda: len(stream.results) >= seen + rate * 3, 30, "three more seconds of requests")
        figures = stream.stop()
    return {"down_s": round(down, 1), "recover_s": round(recovered, 1), **figures}


def main():
    args = sys.argv[1:]
    patch = None
    if "--dial-timeout" in args:
        at = args.index("--dial-timeout")
        patch = traefik_dial_timeout(int(args[at + 1]))
        print(f"changed in the rendered copy: Traefik dialTimeout {args[at + 1]}s (the template's: 2s)")
        del args[at:at + 2]
    rate = float(args[0]) if args else 20.0
    with kit.images_for_run() as (mode, report), tempfile.TemporaryDirectory() as tmp:
        print("\n".join(report), flush=True)
        build_images()
        cluster = Cluster(Path(tmp) / "cluster")
        try:
            cluster.start()
            print(f"form_s={cluster.timings['form']:.1f}", flush=True)
            deployment = ClusterDeployment(cluster, Path(tmp) / "project", mode, patch=patch)
            t = time.perf_counter()
            built = deployment.build()
            if built:
                print(f"build_s={time.perf_counter() - t:.1f} (script/build {deployment.sha} on the host)", flush=True)
            deployment.first_deploy()
            print("\n".join(deployment.notes))
            print(f"images_s={deployment.timings['images']:.1f} deploy_s={deployment.timings['deploy']:.1f}", flush=True)
            deployment.settle()
            figures = recover(deployment, cluster.workers[0], rate)
            print("lost worker (killed, not drained): " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
        finally:
            cluster.close()
        left = cluster.leftovers()
        print(f"left behind: {left if any(left.values()) else 'nothing'}")


if __name__ == "__main__":
    main()
