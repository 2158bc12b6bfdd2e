"""A local single-node swarm running the generated production stack.

Used by tests/e2e/swarm (its fixtures) and benchmarks/zero_downtime.py. Everything
goes through the generated project's own scripts (bootstrap, build, deploy,
rollback, monitoring); the harness only adds what a real server has and this
machine lacks: a swarm, certificates, and (without IPVS) a dnsrr override.

Releases: SHA1 is the project as rendered (migration V1); SHA2 and SHA3 add
migrations V2 and V3; BROKEN is SHA1 with a healthcheck that always fails.
"""

import json
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path

from harness import reaper
from harness.bake import bake, copy_template
from harness.docker import docker, release_build
from harness.proc import DEVNULL, CommandFailed, run
from harness.stack import (  # noqa: F401 - the tier's names, imported from here by its tests
    APP_STACK_SERVICES,
    DOMAIN,
    FAST_INTERVALS_NOTE,
    NOTES,
    REGISTRY,
    STAGING_DOMAIN,
    STATE_ROLES,
    SWARM_NAME,
    StackDriver,
    _tags,
    cached_name,
    fast_intervals,
    harness_overrides,
    park_images,
    short_alert_rules,
    unpark_images,
    write_override,
)
from harness.wait import WaitTimeout, until

BACKUP_INTERVAL = 30  # seconds between the backup service's dumps, short enough to see one
# The alerts whose `for:` a fast deployment shortens to ALERT_FOR, {name: the project's `for:`}, in a harness copy
# of the rules file (harness/stack.py short_alert_rules). The promtool unit tests (tests/lint/fixtures/monitoring)
# keep the project's values.
SHORT_ALERTS, ALERT_FOR = {"AppServiceNotRunning": "1m"}, "10s"

SHA1, SHA2, SHA3, BROKEN = "aaaa1111", "bbbb2222", "cccc3333", "dead0000"
RELEASES = (SHA1, SHA2, SHA3, BROKEN)
V1, V2, V3 = 20250101000000, 20250201000000, 20250301000000
MIGRATIONS = {SHA1: [V1], SHA2: [V1, V2, V3], SHA3: [V1, V2, V3], BROKEN: [V1]}
ADDED_MIGRATIONS = (
    (V2, "add_priority_to_notes",
     "    alter table_for(Note) do\n      add priority : Int32, default: 0\n    end",
     "    alter table_for(Note) do\n      remove :priority\n    end"),
    (V3, "create_tags",
     "    create :tags do\n      primary_key id : Int64\n      add name : String\n    end",
     "    drop :tags"),
)


class Swarm:
    """Use the running swarm, or start one on 127.0.0.1 and leave it afterwards."""

    def __enter__(self):
        state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
        self.created = state != "active"
        if self.created:
            docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        return self

    def __exit__(self, *exc):
        if self.created:
            docker("swarm", "leave", "--force", check=False)


class StateUnreachable(RuntimeError):
    """The stack did not reach the state asked for by the cheap route."""


class Deployment(StackDriver):
    """One rendered project on this host's swarm, driven by its own scripts; `close()` removes everything."""

    short_alerts = SHORT_ALERTS  # fast: shortened to ALERT_FOR in the monitoring stack

    def __init__(self, project, workdir, mode, fast=True):
        super().__init__(project, workdir, mode)
        self.env_file = self.workdir / "production.env"
        self.built = set()
        app, monitoring, notes = harness_overrides(mode)
        self.notes += [*notes, FAST_INTERVALS_NOTE] if fast else notes  # fast: harness/stack.py FAST_INTERVALS
        self.override = write_override(self.workdir / "app-override.yml",
                                       fast_intervals(app) if fast else {s: {"deploy": d} for s, d in app.items()},
                                       "Harness-side override of the app stack.", whole=True)
        self.monitoring_override = write_override(self.workdir / "monitoring-override.yml", monitoring,
                                                  "Harness-side override of the monitoring stack.") if monitoring else None
        self.alert_override = None
        if fast:
            self.alert_override = short_alert_rules(self.project, self.workdir, self.swarm_name, self.short_alerts,
                                                    ALERT_FOR)
            self.notes.append(f"harness override: the `for:` of {', '.join(sorted(self.short_alerts))} {ALERT_FOR} "
                              "(the rules file's values are kept by the promtool unit tests)")
        # The deploy lock's private directory (script/functions/swarm take_deploy_lock); lock_file is the file
        # naming its holder.
        self.lock_dir = self.workdir / "deploy-lock"
        self.lock_file = self.lock_dir / "holder"
        self._prebuild, self._prebuild_error = None, None  # the release `prebuild` is making, and its error
        unpark_images(RELEASES, self.registry)
        self.bootstrap()

    # -- how this swarm is reached: the host's engine, the scripts run here -------------------
    def docker(self, *args, **kw):
        return docker(*args, **kw)

    def base_url(self, scheme):
        return f"{scheme}://127.0.0.1"

    def script_env(self):
        env = {"LHD_ENV_FILE": str(self.env_file), "RESOLVE_IMAGE": "never", "DEPLOY_TIMEOUT": "240",
               "WAIT_TIMEOUT": "120", "DEPLOY_LOCK_DIR": str(self.lock_dir), "BACKUP_INTERVAL": str(BACKUP_INTERVAL)}
        if self.override:
            env["LHD_EXTRA_COMPOSE_FILES"] = str(self.override)
        monitoring = [str(f) for f in (self.monitoring_override, self.alert_override) if f]
        if monitoring:
            env["LHD_MONITORING_EXTRA_COMPOSE_FILES"] = ":".join(monitoring)
        return env

    def env(self, **extra):
        """The whole environment the project's scripts run with here: this process's, with the harness's."""
        return dict(os.environ, **super().env(**extra))

    def run_script(self, name, args, env, check, timeout):
        return run([self.project / "script" / name, *args], env=env, cwd=self.project, check=check, timeout=timeout,
                   stdin=DEVNULL)

    # -- releases ---------------------------------------------------------------------
    def prebuild(self, sha):
        """Start making sha's release in a thread of its own, while the first tests run (their waits leave the cores
        free): the first test that asks for a release not yet made waits for it (`release`, `build`), and an error
        in it is raised there."""
        def make():
            try:
                self.release(sha)
            except BaseException as error:  # raised in the test's thread by wait_prebuild
                self._prebuild_error = error
        self._prebuild = threading.Thread(target=make, name=f"prebuild-{sha}", daemon=True)
        self._prebuild.start()

    def wait_prebuild(self):
        """Wait for the release `prebuild` started (if any, and not from its own thread); raise its error."""
        thread = self._prebuild
        if thread is None or thread is threading.current_thread():
            return
        thread.join()
        error, self._prebuild, self._prebuild_error = self._prebuild_error, None, None
        if error is not None:
            raise RuntimeError(f"the release built ahead ({thread.name}) failed") from error

    def build(self, sha):
        """script/build SHA (one release build at a time on this engine: harness/docker.py release_build)."""
        self.wait_prebuild()  # it changes the project's tree (the added migrations) that this build reads
        with release_build():
            result = self.script("build", sha, timeout=3600)
        self.built.add(sha)
        return result

    def release(self, sha):
        """Make sha's images once: SHA1 from the project as rendered, SHA2/SHA3 with the added migrations, BROKEN from SHA1."""
        def made():
            return sha in self.built and (sha not in RELEASES or self.docker(
                "image", "inspect", f"{self.registry}/lucky:{sha}", check=False).returncode == 0)
        if made():
            return
        self.wait_prebuild()  # it may be making this one
        if made():
            return
        self.built.discard(sha)  # built once, but removed since (script/deploy's image cleanup keeps 5 releases)
        if sha == BROKEN:
            self.release(SHA1)
            self.broken_image(SHA1, BROKEN)
            self.built.add(sha)
            return
        if sha != SHA1:
            self.release(SHA1)  # SHA1 is built before the migrations are added
            for migration in ADDED_MIGRATIONS:
                self.add_migration(*migration)
        self.build(sha)

    def release_cheaply(self, sha):
        """Images tagged sha from the project as it is, by script/build: every layer is cached except the few after
        Dockerfile.prod's APP_VERSION argument (so /version answers sha); seconds, not a Lucky build."""
        if sha not in self.built:
            self.build(sha)

    def hold_releases(self):
        """Give the releases' images (RELEASES) their harness cache names now, as `park_images` does at the end,
        but keep their names: something that removes their names (the image cleanup) removes no image, and
        `unpark_images` names them again."""
        held = [image for image in _tags(self.registry) if image.rsplit(":", 1)[1] in RELEASES]
        for image in held:
            docker("tag", image, cached_name(image, self.registry))
        return held

    def add_migration(self, version, name, body_up, body_down):
        """Add a Lucky migration to the project (the next build carries it)."""
        path = self.project / f"db/migrations/{version}_{name}.cr"
        klass = "".join(p.capitalize() for p in name.split("_"))
        path.write_text(f"class {klass}::V{version} < Avram::Migrator::Migration::V1\n  def migrate\n{body_up}\n  end\n\n"
                        f"  def rollback\n{body_down}\n  end\nend\n")
        return path

    def broken_image(self, from_sha, sha):
        """An image of from_sha whose healthcheck never passes, tagged sha."""
        context = self.workdir / f"broken-{sha}"
        context.mkdir(exist_ok=True)
        (context / "healthcheck").write_text("#!/bin/sh\necho 'this build is broken on purpose' >&2\nexit 1\n")
        (context / "healthcheck").chmod(0o755)
        (context / "Dockerfile").write_text(f"FROM {self.registry}/lucky:{from_sha}\n"
                                            "COPY healthcheck /usr/local/bin/healthcheck\n")
        docker("build", "-q", "-t", f"{self.registry}/lucky:{sha}", context)
        docker("tag", f"{self.registry}/hasura:{from_sha}", f"{self.registry}/hasura:{sha}")

    def first_deploy(self, sha=SHA1, https="on"):
        """script/bootstrap --swarm (the node labels again, the env file kept), then script/deploy --first SHA
        (its result is kept as `first`)."""
        self.release(sha)
        self.script("bootstrap", "--swarm")
        self.first = self.script("deploy", "--first", sha, https=https)
        return self.first

    def deploy(self, sha, *flags, check=True, https=None):
        """script/deploy FLAGS SHA, building sha first when needed."""
        self.release(sha)
        return self.script("deploy", *flags, sha, check=check, https=https)

    def rollback(self, sha, *flags, check=True, https=None):
        """script/rollback FLAGS SHA (FLAGS default to --yes: the harness answers the question)."""
        self.release(sha)
        return self.script("rollback", *(flags or ("--yes",)), sha, check=check, https=https)

    # -- bringing the stack to a known state --------------------------------------------
    def bring_to(self, sha, https="on"):
        """Make the stack serve sha with HTTPS_SWITCH=https, sha's migrations and every replica running.

        From wherever it is: deploy or roll back (or `deploy --first` when no
        stack runs); when that does not reach the state, remove everything and
        start afresh. Returns self.
        """
        self.release(sha)
        try:
            self._step_to(sha, https)
        except (CommandFailed, WaitTimeout, StateUnreachable) as error:
            print(f"harness: starting the stack afresh, {sha} (HTTPS_SWITCH={https}) was not reached: {error}")
            self.reset(https)
            self._step_to(sha, https)
        return self

    def _step_to(self, sha, https):
        if not self.stack_deployed():
            self.first_deploy(SHA1, https=https)
        self.https = https
        if set(self.images().values()) != {sha}:
            applied = until(self.migrations, 120, "postgres to list the applied migrations")
            if self.images()["lucky"] != sha and applied[-1] > MIGRATIONS[sha][-1]:
                self.rollback(sha)
            else:
                self.deploy(sha)
        elif self.published_https() != https:
            self.deploy(sha)
        until(lambda: self.settled(sha), 240,
              lambda: f"{self.swarm_name} to serve {sha} with every replica running:\n{self.service_table()}")
        applied = until(self.migrations, 120, "postgres to list the applied migrations")
        if applied != MIGRATIONS[sha]:
            raise StateUnreachable(f"the database has migrations {applied}; {sha} needs {MIGRATIONS[sha]}")

    def reset(self, https="on"):
        """Remove everything, then `script/deploy --first SHA1` on empty volumes."""
        self.close()
        self.first_deploy(SHA1, https=https)

    def settled(self, sha):
        """True when every service of the app stack runs all its replicas (none scaled to 0) and Traefik serves
        sha's /version."""
        counts = [re.match(r"(\d+)/(\d+)", v) for v in self.replicas().values()]
        running = bool(counts) and all(m and m.group(1) == m.group(2) != "0" for m in counts)
        return running and self.version() == sha

    def published_https(self):
        """HTTPS_SWITCH as deployed: on when Traefik publishes port 443, else off."""
        ports = docker("service", "inspect", self.service("traefik"), "--format",
                       "{{range .Spec.EndpointSpec.Ports}}{{.PublishedPort}} {{end}}").stdout.split()
        return "on" if "443" in ports else "off"

    # -- the server's env file and secrets ------------------------------------------------
    def set_env(self, key, value):
        """Set KEY=value in the server's env file (as an operator would edit it)."""
        lines = [line for line in self.env_file.read_text().splitlines() if not line.startswith(f"{key}=")]
        self.env_file.write_text("\n".join([*lines, f"{key}={value}"]) + "\n")

    @contextmanager
    def changed_settings(self, sha, values):
        """The env file with these KEY=value settings, deployed at sha; afterwards, however the block ends, each
        setting as it was (empty when it was not there) and sha deployed again."""
        before = {key: self.settings().get(key, "") for key in values}
        try:
            for key, value in values.items():
                self.set_env(key, value)
            self.deploy(sha)
            yield self
        finally:
            for key, value in before.items():
                self.set_env(key, value)
            self.deploy(sha)

    def admin_api(self, method, path, body=None, secret=None):
        """Hasura's JSON answer to METHOD path (body: a dict sent as JSON) with the admin secret (or `secret`),
        asked from inside the hasura container: Traefik strips the admin secret from public requests, so admins
        ask there."""
        data = ["--header", "Content-Type: application/json", "--data", json.dumps(body)] if body is not None else []
        return json.loads(self.container_exec(
            "hasura", "curl", "--silent", "--max-time", "5", "--request", method,
            "--header", f"x-hasura-admin-secret: {secret or self.admin_secret()}", *data,
            f"http://127.0.0.1:8080{path}"))

    def admin_graphql(self, query, secret=None):
        """`admin_api` for a GraphQL query (a string) on /v1/graphql."""
        return self.admin_api("POST", "/v1/graphql", {"query": query}, secret)

    def settings(self):
        """The server's env file as a dict."""
        return dict(line.split("=", 1) for line in self.env_file.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))

    def secret_file(self, name):
        """The file holding the secret NAME (NAME_FILE in the env file)."""
        return Path(self.settings()[f"{name}_FILE"])

    def secret(self, name):
        """The secret NAME's value, read from its file."""
        return self.secret_file(name).read_text().strip()

    # -- backups ---------------------------------------------------------------------
    def backups(self):
        """(dump names newest first, the "last scheduled backup" line) from script/backup --list."""
        out = self.script("backup", "--list").stdout.splitlines()
        return [line.split()[0] for line in out if line.endswith(" bytes")], \
            next(line for line in out if line.startswith("last scheduled backup:"))

    def dump_sql(self, name, table):
        """The SQL that dump `name` holds for table's rows (pg_restore --data-only --table), read in a
        one-off postgres container with the backups volume mounted."""
        return docker("run", "--rm", *reaper.label_args(), "-v", f"{self.service('backups')}:/backups:ro",
                      "--entrypoint", "pg_restore", f"postgres:{self.postgres_version()}", "--data-only",
                      f"--table={table}", "--file=-", f"/backups/{name}").stdout

    def postgres_version(self):
        return docker("service", "inspect", self.service("postgres"), "--format",
                      "{{.Spec.TaskTemplate.ContainerSpec.Image}}").stdout.strip().split("@")[0].rsplit(":", 1)[1]

    # -- node labels -------------------------------------------------------------------
    def node_id(self):
        return docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()

    def labels(self):
        """This node's labels named like the stack."""
        found = json.loads(docker("node", "inspect", self.node_id(), "--format", "{{json .Spec.Labels}}").stdout) or {}
        return {k: v for k, v in found.items() if k.startswith(f"{self.swarm_name}.")}

    def unlabel(self):
        """Take the stack's labels (put there by script/bootstrap --swarm) off this node."""
        for key in self.labels():
            docker("node", "update", "--label-rm", key, self.node_id(), check=False)

    # -- swarm state -----------------------------------------------------------------
    def stack_containers(self, *stacks):
        """`docker inspect` of every container, running or not, of the stacks (default: the app stack)."""
        ids = [i for stack in (stacks or (self.swarm_name,)) for i in docker(
            "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()]
        return json.loads(docker("inspect", *ids).stdout) if ids else []

    def close(self):
        """Remove both stacks, wait until their containers and networks are gone, then remove their
        volumes, secrets and configs (harness/reaper.py: the stack name is the handle)."""
        reaper.remove_stacks((self.names.monitoring, self.swarm_name), self.swarm_name)

    def park_images(self):
        """At the session's end: the releases' images kept only under their harness-owned cache names
        (harness/stack.py IMAGE_CACHE); the next session's Deployment names them again."""
        return park_images(RELEASES, self.registry)

    def leftovers(self):
        """kind -> ids of services, networks, volumes, secrets and configs named like the stacks, and this
        node's labels named like them."""
        return {**reaper.stack_resources(self.swarm_name), "node labels": sorted(self.labels())}


def prepare(base, mode, releases=RELEASES, fast=True):
    """Render, bootstrap and build the given releases under base (nothing deployed yet); fast: the harness's
    shorter intervals (harness/stack.py FAST_INTERVALS)."""
    deployment = Deployment(bake(Path(base) / "out"), Path(base) / "work", mode, fast)
    for sha in releases:
        deployment.release(sha)
    return deployment


def previous_major_files(base):
    """{path in the project: bytes} of every file that a template release pinning the previous PostgreSQL major
    renders unlike the work tree's template (default answers, both rendered under base): what `cruft update` to the
    pinned major changes in a project. That release as it would have looked (as tests/contracts/test_pg_upgrade.py
    has it): both PostgreSQL pins one major back, the hook's floor with them, the data volume mounted where images
    before 18 keep their data (/var/lib/postgresql/data)."""
    template = Path(base) / "template"
    copy_template(template)
    pins = json.loads((template / "cookiecutter.json").read_text())
    major, previous = (pins[k].split(".")[0] for k in ("_postgres_version", "_postgres_previous_version"))
    pins["_postgres_version"], pins["_postgres_previous_version"] = pins["_postgres_previous_version"], \
        f"{int(previous) - 1}.0"
    (template / "cookiecutter.json").write_text(json.dumps(pins, indent=2))
    hook = template / "hooks/pre_gen_project.py"
    floor = f'split(".")[0]) >= {major},'
    if floor not in hook.read_text():
        raise RuntimeError(f"hooks/pre_gen_project.py has no PostgreSQL floor {floor!r} to move back")
    hook.write_text(hook.read_text().replace(floor, f'split(".")[0]) >= {previous},'))
    compose = template / "{{cookiecutter.project_name}}/Docker/docker-compose.yml"
    mount = "      - db_data:/var/lib/postgresql\n"
    if mount not in compose.read_text():
        raise RuntimeError(f"Docker/docker-compose.yml does not mount {mount.strip()!r}")
    compose.write_text(compose.read_text().replace(mount, "      - db_data:/var/lib/postgresql/data\n"))
    old, new = bake(Path(base) / "old", template=template), bake(Path(base) / "new")
    files = {}
    for path in sorted(p for p in old.rglob("*") if p.is_file()):
        name = str(path.relative_to(old))
        twin = new / name
        # Not what an update changes: cruft's own record (which template, which commit), and the development
        # stack's git-ignored .env, whose secrets each render makes at random.
        if name not in (".cruft.json", ".env") and (not twin.is_file() or twin.read_bytes() != path.read_bytes()):
            files[name] = path.read_bytes()
    return files
