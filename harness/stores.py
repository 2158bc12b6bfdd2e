"""Real offsite stores for the backup tests (issue 23): an S3 endpoint (`rclone serve s3`, Debian's rclone, with
keys) and an SFTP server (Debian's OpenSSH sshd, key logins only), each a container of the kit (kit/rclone,
kit/sftp) on an attachable overlay network that a swarm service can join.

Everything is labelled for the reaper (harness/reaper.py) and removed by `close()`. A store may sit on a
size-limited tmpfs (`size_mb`), so a full store is a real ENOSPC. The credentials are files in `workdir`, as an
operator would write them next to the server's other secrets.
"""

import secrets
from pathlib import Path

from harness import reaper
from harness.docker import docker, unique
from harness.proc import run
from harness.wait import until

RCLONE_IMAGE = "lhd-kit/rclone:1.75.2"
SFTP_IMAGE = "lhd-kit/sftp:sid"
S3_PORT = 8080
SFTP_USER = "offsite"  # not "backup": a Debian system account (nologin)
SFTP_UID = 1000


class StoreNetwork:
    """An attachable overlay network (the host must be a swarm manager) for the stores and the offsite service."""

    def __init__(self):
        self.name = unique("lhdtest-stores")
        docker("network", "create", "--driver", "overlay", "--attachable", *reaper.label_args(), self.name)

    def close(self):
        docker("network", "rm", self.name, check=False)


class Store:
    """One store container; `repository` is restic's address of it, `files` the env file's settings for it."""

    name = ""
    repository = ""

    def __init__(self, network, workdir, size_mb=None):
        self.network = network
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.size_mb = size_mb
        self.files = {}

    def _write(self, name, text, mode=0o600):
        path = self.workdir / name
        path.write_text(text)
        path.chmod(mode)
        return path

    def _run(self, image, *args, env=(), tmpfs=None):
        options = ["--detach", "--name", self.name, "--network", self.network, "--network-alias", self.name,
                   *reaper.label_args()]
        if tmpfs:
            options += ["--tmpfs", tmpfs]
        for pair in env:
            options += ["--env", pair]
        docker("run", *options, image, *args)

    def logs(self):
        result = docker("logs", "--tail", "50", self.name, check=False)
        return result.stdout + result.stderr

    def stop(self):
        """The store goes away (an unreachable store); `start` brings it back with its data."""
        docker("stop", "--time", "2", self.name)

    def start(self):
        docker("start", self.name)
        self.wait()

    def close(self):
        docker("rm", "--force", "--volumes", self.name, check=False)

    def settings(self):
        """KEY=VALUE settings of the server's env file that point the stack at this store."""
        return {"OFFSITE_REPOSITORY": self.repository, **{k: str(v) for k, v in self.files.items()}}

    def wait(self):
        until(self.ready, 30, f"the store {self.name} to answer")


class S3Store(Store):
    """`rclone serve s3` over /data (a tmpfs of size_mb when given), with an access key id and secret."""

    def __init__(self, network, workdir, size_mb=None, bucket="backups"):
        super().__init__(network, workdir, size_mb)
        self.name = unique("lhdtest-s3")
        self.key_id, self.secret = secrets.token_hex(8), secrets.token_hex(20)
        self.files = {"OFFSITE_S3_KEY_ID_FILE": self._write("offsite_s3_key_id", self.key_id + "\n"),
                      "OFFSITE_S3_SECRET_FILE": self._write("offsite_s3_secret", self.secret + "\n")}
        self.repository = f"s3:http://{self.name}:{S3_PORT}/{bucket}"
        tmpfs = f"/data:rw,size={size_mb}m" if size_mb else "/data:rw"
        # rclone's keys as its own option (`--auth-key id,secret`): the store's side of the test, not the project's.
        self._run(RCLONE_IMAGE, "serve", "s3", "--addr", f":{S3_PORT}", "--auth-key", f"{self.key_id},{self.secret}",
                  "--vfs-cache-mode", "off", "/data", tmpfs=tmpfs)
        self.wait()

    def ready(self):
        return "Starting s3 server" in self.logs() or "serving on" in self.logs().lower()


class SftpStore(Store):
    """sshd with one user, `backup`, whose home holds the repository (a tmpfs of size_mb when given)."""

    def __init__(self, network, workdir, size_mb=None):
        super().__init__(network, workdir, size_mb)
        self.name = unique("lhdtest-sftp")
        key = self.workdir / "offsite_ssh_key"
        for path in (key, key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "offsite", "-f", key])
        home = f"/home/{SFTP_USER}"
        tmpfs = f"{home}/repo:rw,size={size_mb or 256}m,uid={SFTP_UID},gid={SFTP_UID},mode=0700"
        self._run(SFTP_IMAGE, env=[f"SFTP_USER={SFTP_USER}", f"SFTP_UID={SFTP_UID}",
                                   f"SFTP_AUTHORIZED_KEY={key.with_suffix('.pub').read_text().strip()}"], tmpfs=tmpfs)
        self.wait()
        kind, host_key = docker("exec", self.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
        self.files = {"OFFSITE_SSH_KEY_FILE": key,
                      "OFFSITE_KNOWN_HOSTS_FILE": self._write("offsite_known_hosts", f"{self.name} {kind} {host_key}\n",
                                                              0o644)}
        self.repository = f"sftp:{SFTP_USER}@{self.name}:{home}/repo"

    def ready(self):
        return "Server listening on" in self.logs()
