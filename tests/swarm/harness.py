"""A local single-node swarm running the generated production stack.

Shared by tests/swarm and benchmarks/zero_downtime.py. Everything goes
through the generated project's own scripts (bootstrap, build, deploy,
rollback, monitoring); the harness only adds what a real server has and this
machine lacks: a swarm, certificates, and (without IPVS) a dnsrr override.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import requests
import yaml
from requests_toolbelt.adapters.host_header_ssl import HostHeaderSSLAdapter

from tests.dockerlib import docker

DOMAIN = "example.com"
LOCAL_ONLY_SERVICES = {"grafana": "Grafana", "cadvisor": "cAdvisor"}


def sh(cmd, env=None, cwd=None, timeout=900, check=True):
    result = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def ipvs_available():
    return Path("/proc/net/ip_vs").exists()


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


def make_ca(directory):
    """A throwaway CA and a certificate for *.DOMAIN signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "origin.key", directory / "origin.csr", directory / "origin.crt"
    sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", ca_key, "-out", ca,
        "-subj", "/CN=LHD test CA"])
    sh(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN=*.{DOMAIN}"])
    ext = directory / "ext.cnf"
    ext.write_text(f"subjectAltName=DNS:*.{DOMAIN},DNS:{DOMAIN}\n")
    sh(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-out", cert, "-extfile", ext])
    return ca, cert, key


class Deployment:
    """One rendered project deployed as a stack; call `close()` to remove everything."""

    def __init__(self, project, workdir, mode):
        self.project = Path(project)
        self.workdir = Path(workdir)
        self.mode = mode
        self.swarm_name = "lhd_app"
        self.registry = "registry.gitlab.com/my-group/lhd-app"
        self.env_file = self.workdir / "production.env"
        self.ca, cert, key = make_ca(self.workdir / "certs")
        shutil.copy(cert, self.project / "etc/certs/origin.crt")
        shutil.copy(key, self.project / "etc/certs/origin.key")
        self.https = "on"
        self.override = None
        self.notes = []
        if not ipvs_available():
            self.override = self.workdir / "no-ipvs.yml"
            self.override.write_text(
                "# Harness-side: this kernel has no IPVS, so no service VIPs.\nservices:\n" + "".join(
                    f"  {s}:\n    deploy:\n      endpoint_mode: dnsrr\n" for s in ("hasura", "lucky", "traefik", "socket-proxy")))
            self.notes.append("no IPVS on this kernel: applied the harness override endpoint_mode=dnsrr")
        self.monitoring_override = None
        monitoring = {}
        if not ipvs_available():
            for service in ("prometheus", "alertmanager", "discovery-proxy", "node-exporter", "cadvisor", "grafana"):
                monitoring.setdefault(service, {})["endpoint_mode"] = "dnsrr"
        if mode == "local":
            monitoring.setdefault("grafana", {})["replicas"] = 0
            monitoring.setdefault("cadvisor", {}).update(mode="replicated", replicas=0)
            self.notes.append("local mode: Grafana and cAdvisor scaled to 0 (no image can be had here)")
        if monitoring:
            self.monitoring_override = self.workdir / "monitoring-override.yml"
            self.monitoring_override.write_text("# Harness-side override of the monitoring stack.\n" + yaml.safe_dump(
                {"services": {name: {"deploy": deploy} for name, deploy in monitoring.items()}}))
        boot = self.script("bootstrap")
        match = re.search(r"login: admin / (\S+)", boot.stdout)
        self.dashboard_password = match.group(1)

    # -- the project's own scripts --------------------------------------------------
    def env(self, **extra):
        env = dict(os.environ, LHD_ENV_FILE=str(self.env_file), HTTPS_SWITCH=self.https, RESOLVE_IMAGE="never",
                   DEPLOY_TIMEOUT="240", WAIT_TIMEOUT="120")
        if self.override:
            env["LHD_EXTRA_COMPOSE_FILES"] = str(self.override)
        if self.monitoring_override:
            env["LHD_MONITORING_EXTRA_COMPOSE_FILES"] = str(self.monitoring_override)
        env.update(extra)
        return env

    def script(self, name, *args, check=True, timeout=900):
        return sh([self.project / "script" / name, *args], env=self.env(), cwd=self.project, check=check,
                  timeout=timeout)

    def build(self, sha):
        return self.script("build", sha, timeout=3600)

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
        context.mkdir()
        (context / "healthcheck").write_text("#!/bin/sh\necho 'this build is broken on purpose' >&2\nexit 1\n")
        (context / "healthcheck").chmod(0o755)
        (context / "Dockerfile").write_text(f"FROM {self.registry}/lucky:{from_sha}\n"
                                            "COPY healthcheck /usr/local/bin/healthcheck\n")
        docker("build", "-q", "-t", f"{self.registry}/lucky:{sha}", context)
        docker("tag", f"{self.registry}/hasura:{from_sha}", f"{self.registry}/hasura:{sha}")

    # -- talking to the stack through Traefik on 127.0.0.1 --------------------------------
    def session(self):
        s = requests.Session()
        s.mount("https://", HostHeaderSSLAdapter())
        return s

    def get(self, host, path="/", scheme=None, session=None, **kw):
        scheme = scheme or ("https" if self.https == "on" else "http")
        kw.setdefault("timeout", 5)
        kw.setdefault("allow_redirects", False)
        kw.setdefault("verify", str(self.ca))
        return (session or self.session()).get(f"{scheme}://127.0.0.1{path}", headers={"Host": f"{host}.{DOMAIN}"}, **kw)

    def post(self, host, path, json_body, headers=None, session=None):
        scheme = "https" if self.https == "on" else "http"
        return (session or self.session()).post(f"{scheme}://127.0.0.1{path}", json=json_body, verify=str(self.ca),
                                                headers={"Host": f"{host}.{DOMAIN}", **(headers or {})}, timeout=10)

    def version(self):
        return self.get("api", "/version").json()["version"]

    def admin_secret(self):
        return dict(line.split("=", 1) for line in self.env_file.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))["HASURA_GRAPHQL_ADMIN_SECRET"]

    def sql(self, query):
        return self.container_exec("postgres", "psql", "-tA", "-U", "lhd_app", "-d", "lhd_app_production", "-c", query)

    # -- swarm state -----------------------------------------------------------------
    def container(self, service):
        ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.swarm_name}_{service}",
                     "--filter", "status=running").stdout.split()
        return ids[0] if ids else None

    def container_exec(self, service, *args):
        """Run a command in the service's container; RuntimeError (retryable by wait_until) on failure."""
        cid = self.container(service)
        if cid is None:
            raise RuntimeError(f"no running container for {service}")
        result = docker("exec", cid, *args, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{service}: {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def images(self):
        """service -> image tag now specified, for the app services."""
        return {s: docker("service", "inspect", f"{self.swarm_name}_{s}", "--format",
                          "{{.Spec.TaskTemplate.ContainerSpec.Image}}").stdout.strip().split("@")[0].rsplit(":", 1)[1]
                for s in ("lucky", "hasura")}

    def migrations(self):
        return [int(v) for v in self.sql("SELECT version FROM migrations ORDER BY version").split()]

    def stack_containers(self):
        ids = docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={self.swarm_name}").stdout.split()
        return [json.loads(docker("inspect", i).stdout)[0] for i in ids]

    def failure_sections(self):
        services = docker("service", "ls", check=False).stdout
        logs = "".join(docker("service", "logs", "--tail", "30", f"{self.swarm_name}_{s}", check=False).stdout
                       for s in ("lucky", "hasura", "traefik"))
        return [("swarm services", services), ("service logs (last 30 lines each)", logs)]

    def close(self):
        """Remove both stacks, then their volumes, secrets and configs."""
        for stack in (f"{self.swarm_name}_monitoring", self.swarm_name):
            docker("stack", "rm", stack, check=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            left = [c for stack in (self.swarm_name, f"{self.swarm_name}_monitoring") for c in docker(
                "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()]
            nets = docker("network", "ls", "-q", "--filter", f"name={self.swarm_name}_").stdout.split()
            if not left and not nets:
                break
            time.sleep(2)
        for kind in ("volume", "secret", "config"):
            names = docker(kind, "ls", "-q", "--filter", f"name={self.swarm_name}_").stdout.split()
            if names:
                docker(kind, "rm", *names, check=False)

    def leftovers(self):
        found = {}
        for kind, args in (("services", ["service", "ls", "-q"]), ("networks", ["network", "ls", "-q"]),
                           ("volumes", ["volume", "ls", "-q"]), ("secrets", ["secret", "ls", "-q"]),
                           ("configs", ["config", "ls", "-q"])):
            found[kind] = docker(*args, "--filter", f"name={self.swarm_name}_").stdout.split()
        return found
