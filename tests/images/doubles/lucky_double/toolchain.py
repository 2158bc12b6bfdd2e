"""The Crystal toolchain as the generated Dockerfiles call it: crystal,
shards, apk and `git clone` of lucky_cli. Builds launchers (program.py)."""

import os
import re
import sys
from pathlib import Path

import yaml

from lucky_double.program import compile_program, write_launcher

KINDS = {"healthcheck.cr": "healthcheck", "tasks.cr": "tasks", "start_server.cr": "server", "lucky.cr": "lucky_cli"}


def project_root(source):
    for parent in [Path(source).resolve().parent, *Path(source).resolve().parents]:
        if (parent / "shard.yml").is_file():
            return parent
    return None


def build(source, out):
    kind = KINDS.get(Path(source).name)
    if kind is None:
        sys.exit(f"crystal double: cannot build {source} (knows {', '.join(KINDS)})")
    project = project_root(source) if kind != "lucky_cli" else None
    write_launcher(out, compile_program(kind, project))


def crystal(args):
    if args[:1] == ["--version"] or args[:1] == ["version"]:
        print("Crystal 1.19.0 [LHD contract double]")
        return
    if args[:1] == ["build"]:
        rest = args[1:]
        out = None
        if "-o" in rest:
            i = rest.index("-o")
            out = rest[i + 1]
            rest = rest[:i] + rest[i + 2:]
        sources = [a for a in rest if a.endswith(".cr")]
        if len(sources) != 1:
            sys.exit("crystal double: build needs exactly one .cr file")
        build(sources[0], out or Path(sources[0]).stem)
        return
    if args[:1] == ["spec"]:
        print("crystal double: specs need Lucky's shards, which local mode cannot fetch; "
              "they run in upstream mode only", file=sys.stderr)
        sys.exit(3)
    sys.exit(f"crystal double: unsupported command {args[:1]}")


def shards(args):
    if args[:1] == ["install"] or args[:1] == ["update"]:
        Path("lib").mkdir(exist_ok=True)
        print("Resolving dependencies (LHD double: shards are not fetched)")
        return
    if args[:1] == ["build"]:
        spec = yaml.safe_load(Path("shard.yml").read_text())
        wanted = [a for a in args[1:] if not a.startswith("-")] or list(spec.get("targets", {}))
        for name in wanted:
            target = spec["targets"].get(name)
            if target is None:
                sys.exit(f"Error target {name} was not found in shard.yml")
            build(target["main"], f"bin/{name}")
            print(f"Building: {name}")
        return
    if args[:1] == ["--version"]:
        print("Shards 0.19.0 [LHD contract double]")
        return
    sys.exit(f"shards double: unsupported command {args[:1]}")


# apk package -> what must exist for it to count as installed
APK = {"postgresql-client": "/usr/bin/pg_isready", "git": "/usr/bin/git", "ca-certificates": "/etc/ssl/certs",
       "tzdata": "/usr/share/zoneinfo", "bash": "/bin/bash", "curl": "/usr/bin/curl"}


def apk(args):
    if args[:1] != ["add"]:
        sys.exit(f"apk double: only `apk add` is supported, not {args[:1]}")
    for package in (a for a in args[1:] if not a.startswith("-")):
        name = re.sub(r"^postgresql\d+-client$", "postgresql-client", package.split("=")[0])
        if name not in APK or not Path(APK[name]).exists():
            sys.exit(f"apk double: package {package} is not provided by the local image kit")
        print(f"(double) {package} is installed")


def git(args):
    urls = [a for a in args if "luckyframework/lucky_cli" in a]
    if args[:1] == ["clone"] and urls:
        positional, branch, rest = [], None, args[1:]
        while rest:
            arg, rest = rest[0], rest[1:]
            if arg in ("--depth", "--branch", "-b", "--origin", "-o"):
                branch = rest[0] if arg in ("--branch", "-b") else branch
                rest = rest[1:]
            elif not arg.startswith("-"):
                positional.append(arg)
        dest = Path(positional[1] if len(positional) > 1 else "lucky_cli")
        (dest / "src").mkdir(parents=True, exist_ok=True)
        (dest / "shard.yml").write_text("name: lucky_cli\ntargets:\n  lucky:\n    main: src/lucky.cr\n")
        (dest / "src/lucky.cr").write_text("# lucky_cli (LHD double)\n")
        print(f"Cloning into '{dest}'... (LHD double of lucky_cli {branch or ''})")
        return
    os.execv("/usr/bin/git", ["git", *args])


def main():
    tool = Path(sys.argv[0]).name
    {"crystal": crystal, "shards": shards, "apk": apk, "git": git}[tool](sys.argv[1:])
