"""Operations on the production stack, through the generated scripts: maintenance mode (script/maintenance, seen
through Traefik on 127.0.0.1:443), production logs (script/logs --production), and the image cleanup after each
deploy with the rollbacks it allows (script/deploy, script/rollback).

Every test starts from the session's deployment serving SHA1 (`live`) and leaves it there.
"""

import json
import re
import time
import uuid

import pytest

from harness.docker import docker
from harness.stack import unpark_images
from harness.swarm import RELEASES, SHA1
from harness.wait import until

MESSAGE = "Upgrading the database, back at 14:00 UTC"


def maintenance_answer(live, accept="text/html", method="GET", path="/"):
    """Traefik's answer for api.DOMAIN once maintenance mode routes it: a 503 (or None while not yet)."""
    def answer():
        got = live.request(method, "api", path, headers={"Accept": accept})
        return [got] if got.status_code == 503 and "Retry-After" in got.headers else None
    return until(answer, 30, "Traefik to answer api. with the maintenance page")[0]


def service_log(live, service, since="5m"):
    return live.task_logs(service, since=since)


# script/logs' warning when `docker service logs` printed some lines and then stopped (moby/moby#38640): seen
# under load in a full run, the output ending minutes before the request the test looks for.
HUNG = "had not returned after"


# LOGS_TIMEOUT for these runs (60 s in the script): a hung stream is given up, and the run tried again, after 15 s
# (run 27, 2026-12-05: one hang cost the module 60 s). A stream that is not hung ends within a second or two here.
LOGS_TIMEOUT = "15"


def production_logs(live, *args, attempts=3):
    """script/logs --production ARGS, run again (at most `attempts` times) while it says Docker's log stream hung:
    what it printed then is what Docker gave, not what the script chose. Returns the last run's stdout."""
    for _ in range(attempts):
        result = live.script("logs", "--production", *args, env={"LOGS_TIMEOUT": LOGS_TIMEOUT})
        if HUNG not in result.stderr:
            return result.stdout
    pytest.fail(f"docker service logs hung in each of {attempts} runs of script/logs: {result.stderr[-500:]}")


@pytest.fixture
def maintenance_off(live):
    """The deployment, and maintenance mode off again afterwards whatever the test did."""
    yield live
    live.script("maintenance", "off", check=False)


def test_maintenance_answers_503_and_nothing_reaches_the_app(maintenance_off):
    """On: every api. request gets 503 with Retry-After, HTML for a browser and JSON for an API client, from the
    maintenance router (Traefik's access log), none reaches Lucky or Hasura (their logs), the dashboard still
    answers; a redeploy keeps it on (env file); off: the app serves again."""
    live = maintenance_off
    marker = f"/maintenance-probe-{uuid.uuid4().hex[:12]}"
    on = live.script("maintenance", "on", "--message", MESSAGE)
    assert "✔ All done." in on.stdout
    assert live.settings()["MAINTENANCE"] == "true"

    maintenance_answer(live)  # Traefik routes to the maintenance page now; the marked requests follow
    page = live.request("GET", "api", f"{marker}-html", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "300"
    assert page.headers["Content-Type"].startswith("text/html")
    assert f"<p>{MESSAGE}</p>" in page.text
    api = live.request("GET", "api", f"{marker}-json", headers={"Accept": "application/json"})
    assert api.status_code == 503 and api.headers["Retry-After"] == "300"
    assert api.json() == {"error": "maintenance", "message": MESSAGE, "retry_after": 300}
    graphql = maintenance_answer(live, accept="*/*", method="POST", path="/v1/graphql")
    assert graphql.json()["error"] == "maintenance"
    assert live.request("GET", "api", "/version").status_code == 503

    dashboard = live.get("traefik", "/api/http/routers", auth=("admin", live.dashboard_password))
    assert dashboard.status_code == 200
    assert "maintenance@swarm" in {router["name"] for router in dashboard.json()}

    # A redeploy of the same release reads MAINTENANCE=true from the env file: still on.
    live.deploy(SHA1)
    maintenance_answer(live)
    assert live.get("api", f"{marker}-redeployed").status_code == 503

    time.sleep(2)  # the access log is written when the response ends
    access = [line for line in service_log(live, "traefik").splitlines() if marker in line]
    assert len(access) >= 3 and all("maintenance@swarm" in line for line in access), access
    for service in ("lucky", "hasura"):
        assert marker not in service_log(live, service), f"a maintenance-time request reached {service}"

    off = live.script("maintenance", "off")
    assert "✔ All done." in off.stdout
    assert live.settings()["MAINTENANCE"] == "false"
    assert live.routed_get("api", "/version", timeout=30).json()["version"] == SHA1
    after = f"{marker}-after"
    assert live.get("api", after).status_code == 404  # Lucky's own answer
    until(lambda: after in service_log(live, "lucky", "2m"), 30, "Lucky to log the request made after maintenance")


def test_production_logs_find_a_request_and_hide_secrets(live):
    """script/logs --production lucky --since 5m prints the line Lucky logged for a request with a unique path;
    a secret's value in that request is printed as [secret]."""
    marker = f"/logs-probe-{uuid.uuid4().hex[:12]}"
    secret = live.secret("HASURA_JWT_KEY")
    assert live.get("api", f"{marker}?token={secret}").status_code == 404
    until(lambda: marker in service_log(live, "lucky", "2m"), 30, "Lucky to log the request")
    raw = service_log(live, "lucky", "2m")
    logs = production_logs(live, "lucky", "--since", "5m")
    lines = [line for line in logs.splitlines() if marker in line]
    assert lines, logs[-2000:]
    assert secret not in logs
    if secret in raw:  # Lucky logged the query: the mask must have replaced it
        assert any("[secret]" in line for line in lines), lines
    everything = production_logs(live, "--since", "5m")
    assert marker in everything and secret not in everything
    assert "_traefik." in everything and "_postgres." in everything  # every service's lines, named by task


def test_logs_production_refuses_an_unknown_service(live):
    refused = live.script("logs", "--production", "nosuch", check=False)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "has no service 'nosuch'" in refused.stderr


def project_images(live, registry=None):
    """name:tag of the images named <registry>/<name>:<tag> on this engine."""
    registry = registry or live.registry
    rows = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return {r.removeprefix(registry + "/") for r in rows if r.startswith(registry + "/") and not r.endswith("<none>")}


def images_bytes():
    """What the engine's images take on disk (`docker system df`, the Images row's size), in bytes."""
    size = json.loads(docker("system", "df", "--format", "{{json .}}").stdout.splitlines()[0])["Size"]
    number, unit = re.fullmatch(r"([\d.]+)\s*([kMGT]?B)", size).groups()
    return float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]


# KEEP_RELEASES as this test sets it in the env file: the rule is the same for any number, and each release kept
# costs a build and a deploy (the default 5, the env file script/bootstrap writes, is tests/render/test_operations.py's).
KEEP = 2


def test_cleanup_keeps_the_last_releases(live, record_property):
    """KEEP + 1 cheap releases deployed after SHA1 with KEEP_RELEASES=KEEP in the env file: each deploy's cleanup
    leaves the KEEP newest releases' images (and the running one) and removes older ones of this project only (a
    similarly named image of another project stays); script/rollback to the KEEP-th newest works with no registry,
    to the one before it refuses in one line, having changed nothing."""
    shas = [f"0e5a{n:04d}" for n in range(1, KEEP + 2)]
    others = [f"{live.registry}-legacy/lucky:{shas[0]}", f"{live.registry}/lucky-legacy:{shas[0]}"]
    live.hold_releases()  # the session's release images keep their cache names while the cleanup untags them
    keep_before = live.settings().get("KEEP_RELEASES", "")
    source = docker("image", "ls", "-q", "lhd-kit/debian:bookworm").stdout.split()[0]
    for other in others:
        docker("tag", source, other)
    try:
        live.set_env("KEEP_RELEASES", str(KEEP))  # inside the try: the finally puts it back for the next tests
        started = time.perf_counter()
        builds = []
        for sha in shas:
            t = time.perf_counter()
            live.release_cheaply(sha)
            builds.append(time.perf_counter() - t)
        record_property("cheap build seconds", [round(b, 1) for b in builds])
        print(f"cheap build seconds: {[round(b, 1) for b in builds]}")
        before = images_bytes()
        deploys = []
        for sha in shas:
            t = time.perf_counter()
            out = live.script("deploy", sha)
            deploys.append(time.perf_counter() - t)
            assert "Image cleanup" in out.stdout, out.stdout
        record_property("deploy seconds", [round(d, 1) for d in deploys])
        print(f"deploy seconds: {[round(d, 1) for d in deploys]}")
        print("cleanup said:", [line for line in out.stdout.splitlines() if "Image cleanup" in line])
        kept = project_images(live)
        newest = shas[1:]  # the KEEP newest; shas[-1] runs
        for name in ("lucky", "hasura", "lucky-base"):
            assert {f"{name}:{sha}" for sha in newest} <= kept, kept
            assert f"{name}:{shas[0]}" not in kept and f"{name}:{SHA1}" not in kept, kept
        for other in others:
            assert docker("image", "inspect", other, check=False).returncode == 0, f"{other} was removed"
        record_property("images bytes before/after the deploys", (before, images_bytes()))
        print(f"images bytes before/after the deploys: {before:.0f} / {images_bytes():.0f}")

        # RESOLVE_IMAGE=never (the harness's), and the registry's host does not resolve here: offline.
        # script/rollback itself, not live.rollback: the harness would build a release whose images are gone.
        rolled = live.script("rollback", "--yes", shas[1])
        assert "✔ All done." in rolled.stdout
        assert until(live.version, 60, "/version after the rollback") == shas[1]
        log_before = (live.project / "var/releases.log").read_text()
        refused = live.script("rollback", "--yes", shas[0], check=False)
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert f"script/build {shas[0]}" in refused.stderr and "docker pull" in refused.stderr, refused.stderr
        assert f"keeps the last {KEEP} releases" in refused.stderr, refused.stderr
        assert live.version() == shas[1]
        assert (live.project / "var/releases.log").read_text() == log_before
        record_property("module part seconds", round(time.perf_counter() - started, 1))
    finally:
        live.set_env("KEEP_RELEASES", keep_before)
        unpark_images(RELEASES, live.registry)
        live.bring_to(SHA1)
        # Tags only (each image keeps its other names; an R* image only a stopped task still uses loses its last).
        leftovers = [f"{live.registry}/{name}:{sha}" for name in ("lucky", "hasura", "lucky-base") for sha in shas]
        docker("image", "rm", "--force", "--no-prune", *others, *leftovers, check=False)
        live.built.difference_update(shas)
