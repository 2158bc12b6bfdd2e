"""The production stack on a three-node swarm (one manager, two workers) in containers, with a real
registry: workers pull the project's images with the manager's login, replicas spread across nodes,
Traefik on the manager routes to every node, stateful services stay with their node label, losing a
worker loses no request, Prometheus sees every node.
"""

import json
from datetime import UTC, datetime

from harness.cluster import REGISTRY_HOST
from harness.names import DEFAULT as NAMES
from harness.report import add_to_report
from harness.wait import until


def test_the_swarm_has_a_manager_and_two_workers(cluster):
    """Three engines in containers form one swarm: one leader, two workers, all Ready."""
    status = cluster.nodes_status()
    assert set(status) == set(cluster.nodes)
    assert {node: s[0] for node, s in status.items()} == {node: "Ready" for node in cluster.nodes}
    assert status[cluster.manager][2] == "Leader"
    assert all(status[w][2] == "" for w in cluster.workers)


def test_workers_pull_from_the_registry_only_with_the_managers_login(cluster):
    """An image pushed after `docker login` reaches a worker through --with-registry-auth; without the
    login the push is refused, and without --with-registry-auth the worker cannot pull it."""
    from kit import kit

    image = f"{REGISTRY_HOST}/lhd-cluster/probe:{cluster.name.rsplit('-', 1)[1]}"
    cluster.load([kit.BASE], [cluster.manager])
    cluster.docker_on(cluster.manager, "tag", kit.BASE, image)
    refused = cluster.docker_on(cluster.manager, "push", image, check=False)
    assert refused.returncode != 0 and "no basic auth credentials" in refused.stderr + refused.stdout
    cluster.login(cluster.manager)
    cluster.docker_on(cluster.manager, "push", "--quiet", image)
    assert "lhd-cluster/probe" in cluster.catalog()

    worker = cluster.workers[0]
    try:
        for name, auth in (("lhd-cluster-probe-noauth", []), ("lhd-cluster-probe", ["--with-registry-auth"])):
            cluster.docker_on(cluster.manager, "service", "create", "--detach", "--name", name, *auth,
                              "--constraint", f"node.hostname=={worker}", "--restart-condition", "none",
                              image, "sleep", "600")

        def state(name):
            return cluster.docker_on(cluster.manager, "service", "ps", "--no-trunc", "--format",
                                     "{{.CurrentState}}|{{.Error}}", name).stdout
        until(lambda: state("lhd-cluster-probe").startswith("Running"), 120, "the probe to run on the worker")
        until(lambda: "No such image" in state("lhd-cluster-probe-noauth") or "Rejected" in state("lhd-cluster-probe-noauth"),
              120, "the probe without the login to be rejected")
        pulled = cluster.docker_on(worker, "images", "--digests", "--format", "{{.Repository}}@{{.Digest}}").stdout
        assert f"{REGISTRY_HOST}/lhd-cluster/probe@sha256:" in pulled
    finally:
        cluster.docker_on(cluster.manager, "service", "rm", "lhd-cluster-probe", "lhd-cluster-probe-noauth", check=False)


def test_replicas_spread_over_every_node_from_the_registry(spread):
    """script/deploy --first on the manager: lucky runs on all three nodes and hasura on two, every worker
    pulled the project's images from the registry (pinned by digest), and the workers hold no image of
    the project that the harness put there."""
    d = spread
    assert set(d.task_nodes("lucky")) == set(d.cluster.nodes)
    assert len(d.task_nodes("hasura")) == 2
    for service in ("lucky", "hasura"):
        spec = d.docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                        NAMES.service(service)).stdout.strip()
        assert spec.startswith(f"{d.image(service)}@sha256:"), spec
    for worker in d.cluster.workers:
        pulled = d.cluster.docker_on(worker, "images", "--digests", "--format", "{{.Repository}}:{{.Tag}}@{{.Digest}}").stdout
        project = [line for line in pulled.splitlines() if line.startswith(REGISTRY_HOST)]
        assert project and all(":<none>@sha256:" in line for line in project), pulled
    assert {f"{NAMES.registry_path}/lucky", f"{NAMES.registry_path}/hasura"} <= set(d.cluster.catalog())


def test_traefik_on_the_manager_routes_to_tasks_on_every_node(spread):
    """Requests from the host to the manager's published HTTPS port reach lucky's tasks on all three
    nodes and hasura's on both of its nodes (Traefik's access log names each upstream task)."""
    d = spread
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    session = d.session()
    versions = {d.get("api", "/version", session=session).json()["version"] for _ in range(30)}
    assert versions == {d.sha}
    answers = [d.post_graphql(session) for _ in range(20)]
    assert all("errors" in a or "data" in a for a in answers), answers[:3]

    def upstream_nodes():
        seen = d.upstreams(since)
        lucky, hasura = d.task_addresses("lucky"), d.task_addresses("hasura")
        return {"lucky": {lucky.get(ip, ip) for ip in seen.get("lucky", ())},
                "hasura": {hasura.get(ip, ip) for ip in seen.get("hasura", ())}}
    nodes = until(lambda: (lambda n: n if len(n["lucky"]) == 3 and len(n["hasura"]) == 2 else None)(upstream_nodes()),
                  30, lambda: f"Traefik's access log to name every task: {upstream_nodes()}")
    assert nodes["lucky"] == set(d.cluster.nodes)
    assert nodes["hasura"] == set(d.task_nodes("hasura"))


def test_stateful_services_run_only_where_their_label_is(spread):
    """postgres, backup, traefik and the socket proxy run on the labelled manager only; with the db label
    on no node, postgres and backup are stopped and stay pending (no node may start them empty), deploy
    refuses, and with the label back postgres returns on its own volume."""
    d = spread
    c = d.cluster
    for service in ("postgres", "backup", "traefik", "socket-proxy"):
        assert d.task_nodes(service) == {c.manager: 1}, service
    constraints = d.docker("service", "inspect", "--format", "{{json .Spec.TaskTemplate.Placement.Constraints}}",
                           NAMES.service("postgres")).stdout
    assert f"node.labels.{NAMES.swarm}.db == true" in constraints
    d.sql("CREATE TABLE IF NOT EXISTS cluster_marker (id int); INSERT INTO cluster_marker VALUES (1)")
    try:
        d.label("db", c.manager, present=False)

        def pending():
            states = {s: d.task_states(s) for s in ("postgres", "backup")}
            running = [n for n in c.nodes for s in ("postgres", "backup") if d.containers_on(n, s)]
            return states if not running and all(
                st and all(state == "pending" and "no suitable node" in err for state, err in st)
                for st in states.values()) else None
        states = until(pending, 120, lambda: "postgres and backup to stay pending:\n" + d.docker(
            "service", "ps", NAMES.service("postgres"), NAMES.service("backup"), check=False).stdout)
        assert all("scheduling constraints not satisfied" in err for st in states.values() for _, err in st), states
        refused = d.script("deploy", d.sha, check=False)
        assert refused.returncode == 1
        assert f"no swarm node carries the label {NAMES.swarm}.db=true" in refused.stderr
    finally:
        d.label("db", c.manager)
    until(lambda: d.task_nodes("postgres") == {c.manager: 1} and d.sql("SELECT count(*) FROM cluster_marker") == "1",
          180, "postgres to start again on the manager, on its volume")
    d.sql("DROP TABLE cluster_marker")


def test_losing_a_worker_loses_no_request(spread, request):
    """Under a bounded request stream: drain a worker (its tasks move), then kill it (its engine dies):
    no request fails, lucky and hasura run all their replicas on the two nodes left; the worker comes
    back Ready and active."""
    d = spread
    c = d.cluster
    worker = c.workers[-1]
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with d.stream() as stream:
        stream.mark("drain")
        d.docker("node", "update", "--availability", "drain", worker)
        # Drained means the worker's containers have exited (lucky serves SHUTDOWN_DELAY seconds after
        # SIGTERM while Traefik drops it) and their replacements run elsewhere.
        until(lambda: not any(d.containers_on(worker, s) for s in ("lucky", "hasura")) and d.all_running()
              and sum(d.task_nodes("lucky").values()) == 3, 180,
              lambda: f"the tasks of {worker} to move:\n{d.service_table()}")
        stream.mark("drained")
        c.kill(worker)
        stream.mark("kill")
        until(lambda: c.nodes_status()[worker][0] == "Down", 120, f"the manager to see {worker} down")
        stream.mark("down")
        seen = len(stream.results)
        until(lambda: len(stream.results) >= seen + stream.rate * 5, 30, "five more seconds of requests")
        figures = stream.stop()
    add_to_report(request.config, [f"cluster: worker drained then killed under {stream.rate:.0f} req/s: {figures}"])
    slow = [line for line in d.traefik_log(since).splitlines() if "/version" in line and '" 200 ' not in line]
    assert figures["failures"] == 0, f"{figures}\nTraefik's log of the failed requests:\n" + "\n".join(slow[-10:])
    assert figures["requests"] >= 100, figures
    assert sum(d.task_nodes("lucky").values()) == 3 and worker not in d.task_nodes("lucky")
    assert sum(d.task_nodes("hasura").values()) == 2 and worker not in d.task_nodes("hasura")

    c.revive(worker)
    d.docker("node", "update", "--availability", "active", worker)
    until(lambda: c.nodes_status()[worker][:2] == ("Ready", "Active"), 120, f"{worker} to be Ready and Active again")


def test_prometheus_sees_node_exporter_on_every_node(spread):
    """After `script/monitoring up` on the manager, Prometheus (asked from the host through Traefik)
    scrapes a node-exporter task on each of the three nodes, each reporting its own node's name."""
    d = spread
    d.monitoring_up()
    assert d.task_nodes("node-exporter", stack=NAMES.monitoring) == {n: 1 for n in d.cluster.nodes}

    def exporters():
        up = d.prometheus('up{job="node-exporter"}')
        return up if len(up) == len(d.cluster.nodes) and all(r["value"][1] == "1" for r in up) else None
    up = until(exporters, 180, lambda: f"Prometheus to scrape node-exporter on every node: {d.prometheus('up')}")
    assert {r["metric"]["node"] for r in up} == set(d.cluster.nodes)
    uname = d.prometheus('node_uname_info{job="node-exporter"}')
    assert {(r["metric"]["node"], r["metric"]["nodename"]) for r in uname} == {(n, n) for n in d.cluster.nodes}


def test_cadvisor_on_each_node_reads_its_own_daemon(spread):
    """cAdvisor is told to read Docker on a unix socket in the cadvisor_docker_api volume; on every node the
    socket in that node's volume (cadvisor-proxy, global) answers with that node's own daemon, and refuses a
    call cAdvisor never makes. No cAdvisor image can be had here: the node's own Docker CLI reads the socket
    where cAdvisor's task would mount it (a local named volume lives in the node's /var/lib/docker/volumes)."""
    d = spread
    d.monitoring_up()
    spec = json.loads(d.docker("service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec}}",
                               NAMES.service("cadvisor", NAMES.monitoring)).stdout)
    endpoint = next(a.split("=", 1)[1] for a in spec["Args"] if a.startswith("--docker="))
    socket_dir = endpoint.removeprefix("unix://").rsplit("/", 1)[0]
    volume = next(m["Source"] for m in spec["Mounts"] if m["Type"] == "volume" and m["Target"] == socket_dir)
    assert volume == NAMES.service("cadvisor_docker_api", NAMES.monitoring), spec["Mounts"]
    assert d.task_nodes("cadvisor-proxy", stack=NAMES.monitoring) == {n: 1 for n in d.cluster.nodes}
    host = f"unix:///var/lib/docker/volumes/{volume}/_data/{endpoint.rsplit('/', 1)[1]}"

    def read(node, *args):
        return d.cluster.on(node, "docker", "-H", host, *args, check=False)
    names = {n: until(lambda n=n: read(n, "info", "--format", "{{.Name}}").stdout.strip(), 60,
                      f"cadvisor-proxy on {n} to answer") for n in d.cluster.nodes}
    assert names == {n: n for n in d.cluster.nodes}
    listing = {n: read(n, "ps") for n in d.cluster.nodes}
    assert {n: (r.returncode != 0 and "403" in r.stderr + r.stdout) for n, r in listing.items()} == {
        n: True for n in d.cluster.nodes}, {n: r.stderr for n, r in listing.items()}
