"""The disaster drill (issue 23): a server is lost, and docs/offsite-backups.md's "Recover a lost server" brings
it back on a fresh one, run as written.

A deployed stack (harness/server.py: a kit/dind node with sshd, the project cloned from a bare git remote and
bootstrapped as the README says) gets rows written through Hasura (/v2/query run_sql as admin) and through Lucky
(its own task, `lucky_tasks db.seed.sample_data`, saving through the app's SaveNote), and `script/backup` sends a
dump to a real S3 store (`rclone serve s3`, harness/stores.py) on the servers' network. Then the server's node
container and its volume go: the stack, its volumes, its secrets and the swarm with them. The registry (CI's) and
the store (offsite) stay. On a new node, with only the repository, the env file's non-secret settings and the
offsite credentials, the section's marked shell blocks (`<!-- runbook: ... -->`, read by harness/runbook.py as
the pipeline tier reads the README's) run in order as the deploy user, with the reader's values put in the
variables at their top; what the doc leaves to the reader between blocks (the certificate files, this machine's
settings and, in local mode, the Docker Hub images) is done as the runbook test does it. The new server must serve
the same rows through Hasura and Lucky, hold the same table, and have the release's migrations.
"""

import json
import re
import time
from datetime import UTC, datetime

from harness.docker import docker
from harness.report import add_to_report
from harness.runbook import FENCE, assignments, blocks, substitute
from harness.server import (
    DEPLOY_USER,
    PROJECT_DIR,
    REGISTRY_HOST,
    REMOTE_DIR,
    THIRD_PARTY,
    SecondServer,
    ServerStack,
    upstream_image,
)
from harness.stack import DOMAIN
from harness.stores import S3_PORT
from harness.swarm import MIGRATIONS
from harness.wait import until

RESTIC = "restic/restic"  # the offsite service's and script/backup's image: Docker Hub's, none here serves it
SECTION = "## Recover a lost server"
DOC = "docs/offsite-backups.md"
SENT = re.compile(r"Sent (\S+\.dump) offsite to \S+: snapshot ([0-9a-f]{8})")
# A row of restic's `snapshots` table: the ID first, the dump's path last among the columns we read.
SNAPSHOT_ROW = re.compile(r"^([0-9a-f]{8})\s.*?/([^/\s]+-(\d{8}T\d{6}Z)-[a-z0-9-]+\.dump)", re.M)
HASURA_ROWS = ["drill-hasura-a", "drill-hasura-b", "drill-hasura-c"]
LUCKY_ROWS = ["GraphQL too", "Welcome to LHD"]  # db.seed.sample_data's published notes (its draft is not served)
BULK_ROWS = 20000  # unpublished notes (served by neither), so the dump has some size
TABLE = ("SELECT count(*) || ' ' || md5(string_agg(id || ':' || title || ':' || body || ':' || published, ',' "
         "ORDER BY id)) FROM notes")


def run_sql(stack, sql):
    """Hasura's /v2/query run_sql as admin, asked inside the hasura container (Traefik strips the admin secret)."""
    body = json.dumps({"type": "run_sql", "args": {"source": "default", "sql": sql}})
    answer = json.loads(stack.container_exec(
        "hasura", "curl", "--silent", "--max-time", "60", "--request", "POST",
        "--header", "Content-Type: application/json", "--header", f"x-hasura-admin-secret: {stack.admin_secret()}",
        "--data", body, "http://127.0.0.1:8080/v2/query"))
    assert answer.get("result_type") == "CommandOk", answer
    return answer


def write_rows(stack):
    """The rows: three published notes and the bulk through Hasura, the sample notes through Lucky's task."""
    values = ", ".join(f"('{t}', 'written through Hasura', true)" for t in HASURA_ROWS)
    run_sql(stack, f"INSERT INTO notes (title, body, published) VALUES {values}")
    run_sql(stack, "INSERT INTO notes (title, body, published) SELECT 'bulk-' || n, repeat(md5(n::text), 8), false "
                   f"FROM generate_series(1, {BULK_ROWS}) AS n")
    stack.container_exec("lucky", "with_secrets", "lucky_tasks", "db.seed.sample_data")


def served(stack):
    """(titles Hasura serves a user, titles Lucky's /api/notes serves), each sorted; raises (for `until`) while
    either does not answer yet."""
    data = stack.routed_graphql(user=True, timeout=60)
    assert isinstance(data, dict), data
    lucky = stack.routed_get("api", "/api/notes", timeout=60)
    lucky.raise_for_status()
    return sorted(n["title"] for n in data["notes"]), sorted(n["title"] for n in lucky.json())


def set_env(target, key, value):
    """KEY=value in the server's env file, replacing the line (commented out or not) bootstrap wrote."""
    target.as_deploy("sh", "-c", 'sed -i "/^#\\? \\?$1=/d" "$0" && printf "%s=%s\\n" "$1" "$2" >>"$0"',
                     f"{target.project}/.env.production", key, value)


def put_secret(target, source, name):
    """A file of the operator's into the server's etc/secrets, the deploy user's, mode 600."""
    path = f"{target.project}/etc/secrets/{name}"
    docker("cp", source, f"{target.manager}:{path}")
    target.as_root("chown", f"{DEPLOY_USER}:{DEPLOY_USER}", path)
    target.as_root("chmod", "600", path)
    return path


def push_release(server, images):
    """The release's images in the registry, as CI leaves them: the cached images loaded into the server's
    engine, named as script/build names them, pushed (the registry outlives the server)."""
    server.load(list(images.values()), [server.manager])
    server.login(server.manager)
    for name, cached in images.items():
        server.docker_on(server.manager, "tag", cached, name)
        server.docker_on(server.manager, "push", "--quiet", name, timeout=900)


def lose(server):
    """The server is gone: its node container (its engine, stack, volumes, secrets, swarm) and its volume."""
    docker("rm", "--force", "--volumes", server.manager, timeout=180)
    docker("volume", "rm", "--force", f"{server.manager}-docker", timeout=180)
    assert not docker("ps", "-a", "-q", "--filter", f"name=^{server.manager}$").stdout.strip()


def snapshots(listing):
    """[(id, dump name, dump time)] of `script/backup --list`'s offsite table."""
    offsite = listing.split("\noffsite (", 1)[1]
    return [(sid, dump, datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))
            for sid, dump, stamp in SNAPSHOT_ROW.findall(offsite)]


def test_a_lost_server_comes_back_from_offsite_as_the_doc_says(server, repository, store, release, image_mode,
                                                                tmp_path, request, record_property):
    """The doc's recovery steps, run as written on a fresh server once the first is gone, serve the rows written
    through Hasura and Lucky again, the same table, with the release's migrations; the time is recorded."""
    sha, images = release
    section = (repository.path / DOC).read_text().split(SECTION, 1)[1]
    found = blocks(section)
    assert [b.step for b in found] == [str(n) for n in range(1, 9)], [b.name for b in found]
    assert len(FENCE.findall(section)) == len(found), "every sh block of the recovery is marked"
    assert all(b.where == "server" and b.user == DEPLOY_USER for b in found)

    # -- the server before the disaster --------------------------------------------------------------------
    site_ca = server.prepare(repository.clone_url(REMOTE_DIR), image_mode)
    if image_mode == "local":
        server.load([upstream_image(RESTIC)], [server.manager])
    repo_url = f"s3:http://{server.ip(store.name)}:{S3_PORT}/backups"
    files = {key: put_secret(server, path, path.name) for key, path in store.files.items()}
    for key, value in {"OFFSITE_REPOSITORY": repo_url, **files}.items():
        set_env(server, key, value)
    push_release(server, images)
    first = ServerStack(server, site_ca, image_mode)
    first.script("deploy", "--first", sha, timeout=1200)
    write_rows(first)
    rows = until(lambda: served(first), 120, "the first server to serve the rows")
    assert rows == (sorted(HASURA_ROWS + LUCKY_ROWS),) * 2, rows
    table = first.sql(TABLE)
    migrations = first.migrations()
    assert migrations == MIGRATIONS[sha]
    backup = first.script("backup")
    dump, snapshot = SENT.search(backup.stdout).groups()
    listing = first.script("backup", "--list").stdout
    size = int(re.search(rf"{re.escape(dump)}\s+(\d+) bytes", listing).group(1))
    # What the operator kept away from the server: the repository password and the store's keys.
    password = first.secret("OFFSITE_PASSWORD")

    # -- the disaster -------------------------------------------------------------------------------------
    lost_at = datetime.now(UTC)
    lose(server)

    # -- a fresh server, prepared as the README's "3. Server" says (its clone and bootstrap: the doc's) ---------
    new = SecondServer(server, tmp_path / "rebuilt", role="rebuilt").start()
    # Its node goes with the first server's close(); the `docker save` files Cluster.load kept (gigabytes) here.
    request.addfinalizer(lambda: [tar.unlink() for tar in new.workdir.glob("images-*.tar")])
    new.add_deploy_user()
    new.as_root("install", "-d", "-o", DEPLOY_USER, "-g", DEPLOY_USER, PROJECT_DIR)
    new.as_deploy("docker", "login", REGISTRY_HOST, "-u", server.registry_user, "--password-stdin",
                  input=server.registry_password, cwd=f"/home/{DEPLOY_USER}")
    values = {"REPO": repository.clone_url(REMOTE_DIR), "OFFSITE_PASSWORD": password, "S3_KEY_ID": store.key_id,
              "S3_SECRET": store.secret, "DOMAIN": DOMAIN, "ADVERTISE_ADDR": new.ip(new.manager),
              "OFFSITE_REPOSITORY": repo_url, "SHA": sha}
    second = ServerStack(new, site_ca, image_mode)
    kept, log, outputs = [], [], {}
    started = time.perf_counter()
    for block in found:
        if block.step == "7":
            # The reader's pick (step 6): the newest snapshot from before the loss.
            listed = snapshots(outputs["6"])
            before = [row for row in listed if row[2] <= lost_at]
            assert before, outputs["6"]
            values["SNAPSHOT"] = max(before, key=lambda row: row[2])[0]
            assert values["SNAPSHOT"] == snapshot, (listed, snapshot)
            newest = max(listed, key=lambda row: row[2])
            log.append(f"  step 6 listed {len(listed)} snapshots; the newest is "
                       f"{'the one from before the loss' if newest[0] == snapshot else 'the new server own ' + newest[1]}")
            # Nothing of the rows is served before the restore: what brings them back is step 7.
            hasura, lucky = served(second)
            assert not set(hasura + lucky) & set(HASURA_ROWS + LUCKY_ROWS), (hasura, lucky)
        body = substitute(block.body, values)
        t = time.perf_counter()
        result = new.as_deploy("bash", "-eo", "pipefail", "-c", "\n".join([*kept, body]), cwd=PROJECT_DIR,
                               check=False, timeout=1800)
        log.append(f"  {block.name}: {time.perf_counter() - t:.0f} s")
        assert result.returncode == 0, \
            f"{block.name} failed:\n{body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        kept.extend(assignments(body))
        outputs[block.step] = result.stdout
        after(block, new, server, image_mode)
        if block.step == "3":
            assert new.as_deploy("cat", f"{PROJECT_DIR}/etc/secrets/offsite_password").stdout.strip() == password
        if block.step == "7":
            assert f"Fetched {dump} from offsite snapshot {snapshot}" in result.stdout, result.stdout
            recovered = until(lambda: (now := served(second)) == rows and now, 180,
                              lambda: f"the rebuilt server to serve the rows: {served(second)}")
            recovery = time.perf_counter() - started

    assert recovered == rows
    assert second.sql(TABLE) == table
    assert second.migrations() == migrations
    assert SENT.search(outputs["8"]), outputs["8"]
    report = [f"drill: recovery {recovery:.0f} s (step 1 to the rows served), dump {size} bytes "
              f"({BULK_ROWS + len(HASURA_ROWS) + 3} notes), release {sha}", *log]
    add_to_report(request.config, report)
    record_property("recovery_seconds", round(recovery, 1))
    record_property("dump_bytes", size)
    print("\n".join(report))


def after(block, new, first, mode):
    """What the doc leaves to the reader between blocks, done as a reader would."""
    if block.step == "2":
        # "Put your certificate files back in etc/certs/": the same files the lost server had.
        for name in ("origin.crt", "origin.key"):
            docker("cp", first.workdir / "site-certs" / name, f"{new.manager}:{PROJECT_DIR}/etc/certs/{name}")
        new.as_root("chown", "-R", f"{DEPLOY_USER}:{DEPLOY_USER}", f"{PROJECT_DIR}/etc/certs")
    if block.step == "3":
        # This machine's settings (no IPVS: dnsrr; no IPsec between Docker-in-Docker engines), where the README
        # sends per-server settings, and (local mode) the stack's Docker Hub images, which no registry serves here.
        new.tune(mode)
        if mode == "local":
            new.load([upstream_image(name) for name in (*THIRD_PARTY, RESTIC)], [new.manager])
