"""The production stack on a three-node swarm (one manager, two workers) in containers, with a real
registry: workers pull the project's images with the manager's login, replicas spread across nodes,
Traefik on the manager routes to every node, stateful services stay with their node label, losing a
worker loses no request, Prometheus sees every node.
"""

import json
from datetime import UTC, datetime

from harness.cluster import PROJECT_DIR, REGISTRY_HOST
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
        # What the operator is told: script/doctor on the manager names the lost worker in its one ✖ line.
        doctor = d.doctor()
        seen = len(stream.results)
        until(lambda: len(stream.results) >= seen + stream.rate * 5, 30, "five more seconds of requests")
        figures = stream.stop()
    add_to_report(request.config, [f"cluster: worker drained then killed under {stream.rate:.0f} req/s: {figures}"])
    slow = [line for line in d.traefik_log(since).splitlines() if "/version" in line and '" 200 ' not in line]
    assert figures["failures"] == 0, f"{figures}\nTraefik's log of the failed requests:\n" + "\n".join(slow[-10:])
    assert figures["requests"] >= 100, figures
    assert sum(d.task_nodes("lucky").values()) == 3 and worker not in d.task_nodes("lucky")
    assert sum(d.task_nodes("hasura").values()) == 2 and worker not in d.task_nodes("hasura")
    failed = [line for line in doctor.stdout.splitlines() if line.startswith("✖")]
    assert doctor.returncode == 1 and failed == [
        f"✖ nodes: {worker} down (the manager hears no engine there; its tasks run elsewhere or not at all): start "
        f"Docker there, or if a node is gone for good: docker node rm --force {worker}"], doctor.stdout

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


def test_doctor_passes_on_the_cluster_and_names_a_label_on_two_nodes(spread):
    """script/doctor on the manager of the healthy cluster (the routed hosts resolving to it, as DNS would):
    every check passes, the nodes' one included; with the db label put on a worker as well, one ✖ line names it
    and both nodes, and it exits 1 (postgres could start there on an empty volume)."""
    d = spread
    c = d.cluster
    healthy = d.doctor()
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "✔ docker", "✔ swarm", "✔ nodes", "✔ labels", "✔ registry", "✔ env", "✔ stack files", "✔ tls", "✔ dns",
        "✔ ports", "✔ disk"], healthy.stdout
    assert "✔ swarm: a manager of 3 node(s)" in healthy.stdout and "✔ nodes: all 3 Ready and Active" in lines
    worker = c.workers[0]
    key = f"{NAMES.swarm}.db"
    try:
        d.label("db", worker)
        planted = d.doctor()
    finally:
        d.label("db", worker, present=False)
    failed = [line for line in planted.stdout.splitlines() if line.startswith("✖")]
    assert planted.returncode == 1 and len(failed) == 1, planted.stdout
    assert failed[0].startswith(f"✖ labels: {key} is on 2 nodes (") and c.manager in failed[0] and worker in failed[0]
    assert f"docker node update --label-rm {key} NODE" in failed[0]


def test_traefik_and_its_certificate_volume_live_on_the_edge_node_only(spread):
    """With a tls=letsencrypt rendering's certificate volume (acme.json's home) mounted into Traefik: its one task
    and that volume are on the node with the edge label, and no other node has such a volume. The live service's
    placement is the letsencrypt rendering's. (No certificate is issued here: the placement is what is shown.)"""
    d = spread
    c = d.cluster
    volume = d.service(d.letsencrypt["volumes"][0].split(":", 1)[0])
    target = d.letsencrypt["volumes"][0].split(":", 1)[1]
    assert d.labelled("edge") == [c.manager]
    assert d.task_nodes("traefik") == {c.manager: 1}
    spec = json.loads(d.docker("service", "inspect", "--format", "{{json .Spec.TaskTemplate}}",
                               NAMES.service("traefik")).stdout)
    assert sorted(spec["Placement"]["Constraints"]) == sorted(d.letsencrypt["placement"]["constraints"])
    assert {"Type": "volume", "Source": volume, "Target": target} in [
        {k: m.get(k) for k in ("Type", "Source", "Target")} for m in spec["ContainerSpec"]["Mounts"]]
    volumes = {n: [v for v in c.docker_on(n, "volume", "ls", "-q").stdout.split() if v == volume] for n in c.nodes}
    assert volumes == {n: ([volume] if n == c.manager else []) for n in c.nodes}
    mounted = d.docker("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", d.container("traefik")).stdout
    assert volume in mounted.split()


KEEP = 2  # KEEP_RELEASES for the cleanup test (the env file): small, so three releases are enough


def cheap_release(d, sha):
    """Images tagged sha that differ from the deployed release's only by a label (a new config, no new layer):
    built from them on the manager and pushed, as script/build --push would, in seconds."""
    c = d.cluster
    for name in ("lucky", "hasura"):
        c.docker_on(c.manager, "build", "--quiet", "-t", d.image(name).replace(d.sha, sha), "-",
                    input=f"FROM {d.image(name)}\nLABEL org.lhd.release={sha}\n")
        c.docker_on(c.manager, "push", "--quiet", d.image(name).replace(d.sha, sha), timeout=300)
    return {name: c.docker_on(c.manager, "image", "inspect", "--format", "{{index .RepoDigests 0}}",
                              d.image(name).replace(d.sha, sha)).stdout.strip().split("@")[1]
            for name in ("lucky", "hasura")}


def test_every_node_keeps_only_the_last_releases(spread, request):
    """KEEP_RELEASES=2 in the env file; two cheap releases A and B deployed after the session's SHA (with the e2e
    tier's fast intervals), then SHA again (production ones, its images pulled back from the registry): after B
    and after SHA, every node (the workers through the cleanup's global job) reports its cleanup, holds no image of
    the release older than the last two (SHA, then A), keeps the other kept release's where a task ran it and the
    running one's, and keeps the images of another project named alike (two decoys on each node, tagged SHA)."""
    d = spread
    c = d.cluster
    shas = ["c1ea0a01", "c1ea0b02"]
    # The digests the first deploy recorded for SHA (var/releases.log: TIME SHA lucky@DIGEST hasura@DIGEST).
    log = c.on(c.manager, "cat", f"{PROJECT_DIR}/var/releases.log").stdout.splitlines()
    first = next(line.split() for line in log if line.split()[1] == d.sha and len(line.split()) == 4)
    digests = {d.sha: dict(part.split("@", 1) for part in first[2:])}
    for sha in shas:
        digests[sha] = cheap_release(d, sha)
    decoys = [f"{d.registry}-legacy/lucky:{d.sha}", f"{d.registry}/lucky-legacy:{d.sha}"]
    env_file = f"{PROJECT_DIR}/.env.production"
    # script/bootstrap wrote KEEP_RELEASES=5 there, and an env file's first line for a key wins.
    c.on(c.manager, "sh", "-c", f"cp {env_file} {env_file}.lhd && sed -i 's/^KEEP_RELEASES=.*/KEEP_RELEASES={KEEP}/' "
         f"{env_file} && grep -qx KEEP_RELEASES={KEEP} {env_file}")
    for node in c.nodes:  # lucky runs on every node: its image by digest is there
        for decoy in decoys:
            c.docker_on(node, "tag", f"{d.image('lucky').rsplit(':', 1)[0]}@{digests[d.sha]['lucky']}", decoy)

    def releases_on(node):
        """name -> the releases whose image (by digest or tag) is on node."""
        found = d.project_images(node)
        return {name: {sha for sha in digests if f"{name}@{digests[sha][name]}" in found or f"{name}:{sha}" in found}
                for name in ("lucky", "hasura")}

    def ran_on(name):
        """release -> the nodes a task of the service ran it on (swarm's task history)."""
        rows = d.docker("service", "ps", "--no-trunc", "--format", "{{.Node}} {{.Image}}", NAMES.service(name)).stdout
        found = {}
        for node, image in (r.split() for r in rows.splitlines() if len(r.split()) == 2):
            found.setdefault(image.split("@")[0].rsplit(":", 1)[1], set()).add(node)
        return found

    def check(running, idle, gone, out):
        """Every node said what its cleanup did; none holds a release in gone; each node that ran the kept idle
        release (deployed once, before the running one) holds its images, and each node running the running
        one holds those; every decoy is there."""
        said = [line for line in out.stdout.splitlines() if line.startswith("→ Image cleanup")]
        assert all(any(node in line for line in said) for node in c.nodes), out.stdout + out.stderr
        seen = {node: releases_on(node) for node in c.nodes}
        for name in ("lucky", "hasura"):
            assert all(not gone & seen[node][name] for node in c.nodes), (name, seen)
            ran = ran_on(name)
            assert all(idle in seen[node][name] for node in ran[idle]), (name, idle, ran, seen)
            assert all(running in seen[node][name] for node in d.task_nodes(name)), (name, running, seen)
        assert all(c.docker_on(node, "image", "inspect", decoy, check=False).returncode == 0
                   for node in c.nodes for decoy in decoys), "a decoy was removed"
        return seen

    try:
        d.script("deploy", shas[0], env=d.fast_env())
        out = d.script("deploy", shas[1], env=d.fast_env())
        check(shas[1], shas[0], {d.sha}, out)
        out = d.script("deploy", d.sha)  # production intervals again, pulled back from the registry
        seen = check(d.sha, shas[1], {shas[0]}, out)
        request.node.user_properties.append(("releases per node", seen))
    finally:
        c.on(c.manager, "sh", "-c", f"mv {env_file}.lhd {env_file}")
        for node in c.nodes:
            c.docker_on(node, "image", "rm", "--no-prune", *decoys, check=False)
        if d.version() != d.sha:
            d.script("deploy", d.sha)
