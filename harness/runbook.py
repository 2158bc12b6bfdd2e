"""The generated README's production path, run as written: its marked shell blocks, in order, each where and as
whom its marker says (issue 27, "A runbook that is run").

A block is marked `<!-- runbook: step=N where=workstation|server as=USER -->` right before its ```sh fence.
`blocks()` reads them from a rendered README; `Runbook` runs them:

- `where=server`: over real SSH (OpenSSH's client in the workstation, sshd in the server) as USER, in the
  project's folder for deploy (the README: "server ones in /srv/<project> as the user deploy") and in the
  home folder for root; stdin is what the reader types (the registry token for `docker login`).
- `where=workstation`: in the workstation, a container on the servers' network (harness/server.py) whose
  Docker CLI talks to the test's runner engine (the one that trusts the test registry), whose `gitlab.com` is
  the test's git host (sshd, a `git` user holding `my-group/lhd-app.git`), `registry.gitlab.com` the test
  registry and `api.<domain>` the server: the names the README uses answer there as they do for a user.

The README asks the reader to replace the values of the variables set at the top of a step's first block;
`substitute` does exactly that for the names given (the rest of each block runs verbatim), and a block sees the
variables earlier blocks of the same machine and user set, as a shell session would keep them.
"""

import re
import shlex
from dataclasses import dataclass

from harness.cluster_nodes import NODE_IMAGE, REGISTRY_HOST
from harness.docker import docker
from harness.proc import run

MARKER = re.compile(r"<!-- runbook: step=(?P<step>\d+) where=(?P<where>workstation|server) as=(?P<user>[\w-]+) -->\n"
                    r"```(?:sh|bash)\n(?P<body>.*?)\n```", re.S)
FENCE = re.compile(r"^```(?:sh|bash)$", re.M)
# A shell variable set on a line of its own (a comment may follow), not a command's environment prefix.
ASSIGNMENT = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>'[^']*'|[^\s'\"]*)(?P<rest>\s*(?:#.*)?)$")
WORKDIR = "/root/work"  # the workstation's folder the project was rendered into
GIT_HOST_USER = "git"


@dataclass
class Block:
    index: int
    step: str
    where: str
    user: str
    body: str

    @property
    def name(self):
        return f"block {self.index + 1} (step {self.step}, {self.where} as {self.user})"


def blocks(readme):
    """The marked shell blocks of a README's text, in order."""
    return [Block(i, m["step"], m["where"], m["user"], m["body"]) for i, m in enumerate(MARKER.finditer(readme))]


def fences(readme, start, end):
    """How many ```sh fences the README has between the headings start and end (every one of the production
    path's blocks must carry a marker)."""
    section = readme[readme.index(start):readme.index(end)]
    return len(FENCE.findall(section))


def substitute(body, values):
    """body with the value of each `NAME=value` line whose NAME is in values replaced (comments kept)."""
    lines = []
    for line in body.splitlines():
        m = ASSIGNMENT.match(line)
        if m and m["name"] in values:
            line = f"{m['name']}={shlex.quote(values[m['name']])}{m['rest']}"
        lines.append(line)
    return "\n".join(lines)


def assignments(body):
    """The `NAME=value` lines of a block (what a shell session keeps for later blocks)."""
    return [line for line in body.splitlines() if ASSIGNMENT.match(line)]


class Workstation:
    """A container on the servers' network standing for the reader's computer (see the module docstring)."""

    def __init__(self, first, runner, hosts):
        """first: the server whose network and registry are used (its close() removes this container);
        runner: the engine the workstation's Docker CLI talks to; hosts: name -> container whose address it has."""
        self.first = first
        self.name = f"{first.name}-workstation"
        self.runner = runner
        self.hosts = hosts

    def start(self):
        adds = [arg for host, container in self.hosts.items()
                for arg in ("--add-host", f"{host}:{self.first.ip(container)}")]
        docker("run", "-d", "--name", self.name, "--hostname", "workstation", "--network", self.first.network,
               *self.first.labels, *adds, "--add-host", f"{REGISTRY_HOST}:{self.first.registry_ip}",
               "-v", f"{self.runner.socket_dir}:/var/run/lhd-engine", "-e", "DOCKER_HOST=unix:///var/run/lhd-engine/docker.sock",
               "--entrypoint", "sleep", NODE_IMAGE, "infinity")
        self.sh("install -d -m 700 ~/.ssh && ssh-keygen -q -t ed25519 -N '' -C you@workstation -f ~/.ssh/id_ed25519"
                f" && git config --global user.name 'LHD runbook test' && git config --global user.email runbook@lhd.test"
                f" && mkdir -p {WORKDIR}")
        return self

    def sh(self, script, cwd=None, input=None, check=True, timeout=1800):
        """bash -eo pipefail -c script in the workstation (as root, the reader), in cwd."""
        flags = ["-i"] if input is not None else []
        return run(["docker", "exec", *flags, "-w", cwd or "/root", self.name, "bash", "-eo", "pipefail", "-c", script],
                   check=check, timeout=timeout, input=input)

    def public_key(self):
        return self.sh("cat ~/.ssh/id_ed25519.pub").stdout.strip()

    def trust_ssh_host(self, line):
        """A known_hosts line for a server (the reader compares the fingerprint their provider shows)."""
        self.sh(f"printf '%s\\n' {shlex.quote(line)} >>~/.ssh/known_hosts")

    def trust_ca(self, ca):
        """The site's CA in the system's trust store (a user's site has a publicly trusted certificate)."""
        docker("cp", ca, f"{self.name}:/usr/local/share/ca-certificates/lhd-test-site.crt")
        self.sh("update-ca-certificates >/dev/null")

    def put(self, source, dest):
        docker("cp", source, f"{self.name}:{dest}")

    def ssh(self, user, host, script, cwd, input=None, check=True, timeout=1800):
        """script run by bash on host as user over SSH from the workstation, in cwd; stdin is input."""
        remote = f"cd {shlex.quote(cwd)} && bash -eo pipefail -c {shlex.quote(script)}"
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", f"{user}@{host}", remote]
        return self.sh(shlex.join(argv), input=input if input is not None else "", check=check, timeout=timeout)


def serve_git(server, path, keys):
    """Make server a git host over SSH: a `git` user whose home holds the bare repository path (e.g.
    my-group/lhd-app.git, as git@gitlab.com:my-group/lhd-app.git names it), keys authorized."""
    if server.as_root("id", "-u", GIT_HOST_USER, check=False).returncode != 0:
        server.as_root("useradd", "--create-home", "--shell", "/bin/bash", GIT_HOST_USER)
        server.as_root("usermod", "-p", "*", GIT_HOST_USER)
    home = f"/home/{GIT_HOST_USER}"
    server.as_root("su", "-", GIT_HOST_USER, "-c",
                   f"git init --quiet --bare -b main {shlex.quote(path)} && install -d -m 700 .ssh")
    authorize_git(server, *keys)
    return f"{home}/{path}"


def authorize_git(server, *keys):
    """Public keys allowed to the git host (a user's SSH key, a server's read-only deploy key)."""
    for key in keys:
        server.as_root("su", "-", GIT_HOST_USER, "-c", f"printf '%s\\n' {shlex.quote(key)} >>.ssh/authorized_keys")
