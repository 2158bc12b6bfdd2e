"""A stand-in for `hasura-cli` (the commands the cli-migrations-v3 entrypoint and the
generated project run): `metadata apply|reload`, `migrate apply`, `seed apply`,
`console` (its API server only, no UI) and `version`.

Like the real CLI it is a client of the engine: it reads a config v3 project
(config.yaml in --project or the working directory) and talks to the server's
metadata and query APIs with the admin secret from --admin-secret,
HASURA_GRAPHQL_ADMIN_SECRET or config.yaml. Sources (hasura/graphql-engine at
SOURCE_TAG) are named next to each command.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import yaml

from hasura_double import SOURCE_TAG
from hasura_double.metadata import ProjectError, build_project_metadata

MIGRATION_MODE = "migration_mode"


def logline(level, message):
    """logrus text format, as the CLI prints it."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level={level} msg={json.dumps(message)}', file=sys.stderr, flush=True)


def fatal(message):
    logline("fatal", message)
    sys.exit(1)


class ServerError(Exception):
    def __init__(self, status, body):
        super().__init__(json.dumps(body, indent=2) if isinstance(body, dict | list) else str(body))
        self.status, self.body = status, body


class Project:
    """cli/cli.go ExecutionContext: flags win over HASURA_GRAPHQL_* env, which wins over config.yaml."""

    def __init__(self, args):
        self.dir = Path(args.project or os.getcwd())
        config_file = self.dir / "config.yaml"
        if not config_file.is_file():
            fatal(f"validating current directory failed: cannot find [config.yaml] | {self.dir} is not a hasura "
                  "project directory")
        self.config = yaml.safe_load(config_file.read_text()) or {}
        self.version = int(self.config.get("version", 1))
        self.endpoint = (args.endpoint or os.environ.get("HASURA_GRAPHQL_ENDPOINT")
                         or self.config.get("endpoint") or "http://localhost:8080").rstrip("/")
        self.secret = (args.admin_secret or os.environ.get("HASURA_GRAPHQL_ADMIN_SECRET")
                       or self.config.get("admin_secret"))
        self.metadata_dir = self.dir / self.config.get("metadata_directory", "metadata")
        self.migrations_dir = self.dir / self.config.get("migrations_directory", "migrations")
        self.seeds_dir = self.dir / self.config.get("seeds_directory", "seeds")

    def call(self, path, payload):
        request = urllib.request.Request(f"{self.endpoint}{path}", data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        if self.secret:
            request.add_header("X-Hasura-Admin-Secret", self.secret)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = raw.decode(errors="replace")
            raise ServerError(exc.code, body) from exc

    def metadata(self, kind, args=None, **extra):
        return self.call("/v1/metadata", {"type": kind, "args": args or {}, **extra})

    def check_server(self):
        """cli/cli.go Validate: the CLI refuses to run without a reachable server."""
        try:
            urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=10).read()
        except OSError as exc:
            fatal(f"connecting to graphql-engine server failed: {exc}")

    # cli/migrate/database/hasuradb/settings.go (SettingsStateStoreWithCatalogStateAPI) and
    # migration_state_catalog_state.go: settings and applied versions live in cli_state.
    def cli_state(self):
        state = self.metadata("get_catalog_state").get("cli_state") or {}
        state.setdefault("migrations", {})
        state.setdefault("settings", {})
        return state

    def save_cli_state(self, state):
        state["isStateCopyCompleted"] = True
        self.metadata("set_catalog_state", {"type": "cli", "state": state})

    def prepare_settings(self):
        """settings.go setDefaults: a missing or empty migration_mode becomes "true"."""
        state = self.cli_state()
        if not state["settings"].get(MIGRATION_MODE):
            state["settings"][MIGRATION_MODE] = "true"
            self.save_cli_state(state)
        return state

    def sources(self):
        return [(s["name"], s.get("kind", "postgres")) for s in self.metadata("export_metadata").get("sources", [])]


# --- metadata apply / reload --------------------------------------------------------

def metadata_apply(project, args):
    """cli/commands/metadata_handlers.go (metadataModeDirectoryHandler.Apply): build the project
    metadata, send replace_metadata v2 with allow_inconsistent_metadata unless
    --disallow-inconsistent-metadata; an inconsistent result is only a warning."""
    try:
        document = build_project_metadata(project.metadata_dir)
    except ProjectError as exc:
        fatal(f"error applying metadata \n{exc}")
    try:
        result = project.call("/v1/metadata", {"type": "replace_metadata", "version": 2, "args": {
            "allow_inconsistent_metadata": not args.disallow_inconsistent_metadata, "metadata": document}})
    except ServerError as exc:
        fatal(f"error applying metadata \n{exc}")
    if not result.get("is_consistent", True):
        logline("warning", "Metadata is inconsistent")
        logline("warning", "Use 'hasura metadata ic list' command to list inconsistent objects")
    logline("info", "Metadata applied")


def metadata_reload(project, _args):
    """cli/commands/metadata_reload.go: reload_metadata; inconsistencies are reported, not fatal."""
    result = project.metadata("reload_metadata")
    if result.get("is_consistent") is False:
        logline("warning", "Metadata is inconsistent")
        logline("warning", "Use 'hasura metadata ic list' command to list inconsistent objects")
    logline("info", "Metadata reloaded")


# --- migrate apply / seed apply -----------------------------------------------------

class NoMigrationMode(Exception):
    """cli/migrate/migrate.go ErrNoMigrationMode."""

    def __init__(self):
        super().__init__("Migration mode is disabled")


def migrations_of(directory):
    found = []
    for entry in sorted(directory.iterdir()) if directory.is_dir() else []:
        version = entry.name.split("_", 1)[0]
        if entry.is_dir() and version.isdigit() and (entry / "up.sql").is_file():
            found.append((version, entry / "up.sql"))
    return found


def migrate_up(project, source):
    """cli/migrate/migrate.go Up: migration mode must be "true" before anything is read;
    no pending migration is ErrNoChange ("nothing to apply")."""
    state = project.prepare_settings()
    if state["settings"].get(MIGRATION_MODE) != "true":
        raise NoMigrationMode()
    applied = state["migrations"].setdefault(source, {})
    pending = [(v, f) for v, f in migrations_of(project.migrations_dir / source) if v not in applied]
    if not pending:
        return f"nothing to apply on database: {source}"
    for version, up in pending:
        project.call("/v2/query", {"type": "run_sql", "args": {"source": source, "sql": up.read_text()}})
        applied[version] = False
        project.save_cli_state(state)
    return f"migrations applied on database: {source}"


def migrate_apply(project, args):
    """cli/commands/migrate_apply.go (Apply/Exec): with --all-databases every source on the
    server; a source without migrations/<source> is a failure, and any failure makes the
    command exit non-zero naming the databases."""
    if not args.all_databases and not args.database_name:
        fatal("unable to determine database on which migration should be applied")
    sources = [name for name, _ in project.sources()] if args.all_databases else [args.database_name]
    failed = []
    for source in sources:
        directory = project.migrations_dir / source
        try:
            if not directory.is_dir():
                raise FileNotFoundError(f"expected to find a migrations directory for database '{source}' in "
                                        f"{project.migrations_dir}, but encountered error: stat {directory}: "
                                        "no such file or directory")
            logline("info", migrate_up(project, source))
        except (FileNotFoundError, NoMigrationMode, ServerError) as exc:
            failed.append(source)
            logline("error", f"skipping applying migrations on database '{source}', encountered: \n{exc}")
    if failed:
        fatal(f"applying migrations failed on database(s): {','.join(failed)}")


def seed_apply(project, args):
    """cli/commands/seed_apply.go: run every seeds/<database>/*.sql file, in name order."""
    for seed in sorted((project.seeds_dir / args.database_name).glob("*.sql")):
        try:
            project.call("/v2/query", {"type": "run_sql", "args": {"source": args.database_name, "sql": seed.read_text()}})
        except ServerError as exc:
            fatal(f"applying seeds failed: {exc}")
    logline("info", "Seeds planted")


# --- console ------------------------------------------------------------------------

def api_handler(project):
    """cli/pkg/console/apiserver.go routes /apis/migrate/settings to cli/migrate/api/settings.go
    and /apis/migrate to cli/migrate/api/migrate.go; both accept any method and answer 405
    to the ones they do not handle."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            print("console-api:", fmt % args, flush=True)

        def reply(self, status, body):
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def route(self):
            url = urlparse(self.path)
            if url.path.rstrip("/") == "/apis/migrate/settings":
                return self.settings()
            if url.path.rstrip("/") == "/apis/migrate":
                return self.migrate(parse_qs(url.query))
            return self.reply(404, {"message": "404 page not found"})

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = route

        def settings(self):
            """settings.go SettingsAPI."""
            if self.command == "GET":
                try:
                    return self.reply(200, {MIGRATION_MODE: project.cli_state()["settings"][MIGRATION_MODE]})
                except (KeyError, ServerError) as exc:
                    return self.reply(500, {"code": "internal_error", "message": str(exc)})
            if self.command == "PUT":
                try:  # BindJSON into {name, value string}: bad JSON or a non-string is an error
                    request = json.loads(self.body())
                    assert isinstance(request, dict)
                    assert all(isinstance(request.get(k, ""), str) for k in ("name", "value"))
                except (ValueError, AssertionError):
                    return self.reply(500, {"code": "internal_error", "message": "Something went wrong"})
                try:  # UpdateSetting stores any name and value in cli_state.settings
                    state = project.cli_state()
                    state["settings"][request.get("name", "")] = request.get("value", "")
                    project.save_cli_state(state)
                except ServerError as exc:
                    return self.reply(500, {"code": "internal_error", "message": str(exc)})
                return self.reply(200, {"message": "Successfuly set"})
            return self.reply(405, {"message": "Method not allowed"})

        def migrate(self, params):
            """migrate.go MigrateAPI (config v3 branch)."""
            if self.command == "GET":
                if not params.get("datasource"):
                    return self.reply(500, {"code": "internal_error", "message": "datasource query parameter is required"})
                return self.reply(200, {"migrations": sorted(project.cli_state()["migrations"]
                                                             .get(params["datasource"][0], {}))})
            if self.command != "POST":
                return self.reply(405, {"message": "Method not allowed"})
            try:
                request = json.loads(self.body())
                assert isinstance(request, dict)
            except (ValueError, AssertionError) as exc:
                return self.reply(500, {"code": "request_parse_error", "message": str(exc)})
            source = request.get("datasource") or ""
            if not source:  # checked before the migration mode is even read
                return self.reply(500, {"code": "internal_error", "message": "datasource key not found in body"})
            up = request.get("up") or []
            if source not in {name for name, _ in project.sources()} and not up:
                return self.reply(500, {"code": "request_parse_error",
                                        "message": f"didn't find any request in UP in query body {source}"})
            stamp = int(time.time() * 1000)
            sql_up = "\n".join(s["args"]["sql"] for s in up if "run_sql" in s.get("type", ""))
            sql_down = "\n".join(s["args"]["sql"] for s in request.get("down") or [] if "run_sql" in s.get("type", ""))
            created = None
            if sql_up or sql_down:  # the migration files are written before the mode is checked
                created = project.migrations_dir / source / f"{stamp}_{request.get('name', '')}"
                try:
                    created.mkdir(parents=True)
                    if sql_up:
                        (created / "up.sql").write_text(sql_up + "\n")
                    if sql_down:
                        (created / "down.sql").write_text(sql_down + "\n")
                except OSError as exc:
                    return self.reply(500, {"code": "create_file_error", "message": str(exc)})
            try:
                state = project.prepare_settings()
                if state["settings"].get(MIGRATION_MODE) != "true":  # migrate.go QueryWithVersion
                    raise NoMigrationMode()
                for step in up:
                    api = "/v2/query" if "run_sql" in step.get("type", "") else "/v1/metadata"
                    project.call(api, {"type": step.get("type"), "args": step.get("args")})
                if created is not None:
                    state["migrations"].setdefault(source, {})[str(stamp)] = False
                    project.save_cli_state(state)
            except NoMigrationMode as exc:
                if created is not None:
                    shutil.rmtree(created, ignore_errors=True)
                return self.reply(400, {"code": "migration_mode_disabled", "message": str(exc)})
            except ServerError as exc:
                if created is not None:
                    shutil.rmtree(created, ignore_errors=True)
                return self.reply(400, {"code": "data_api_error", "message": str(exc)})
            return self.reply(200, {"name": f"{stamp if created else 0}_{request.get('name', '')}"})

    return Handler


def console_handler():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            page = b"<!doctype html><title>Hasura console (LHD double)</title><p>Console double: no UI here.</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    return Handler


def console(project, args):
    """cli/commands/console.go + cli/pkg/console: check the server, prepare the settings
    (NewAPIServer -> NewMigrate), then serve the API and the console page."""
    project.check_server()
    project.prepare_settings()
    host = "0.0.0.0" if args.address in ("0.0.0.0", "") else args.address
    api = ThreadingHTTPServer((host, args.api_port), api_handler(project))
    ui = ThreadingHTTPServer((host, args.console_port), console_handler())
    threading.Thread(target=ui.serve_forever, daemon=True).start()
    logline("info", f"console running at: http://{args.address}:{args.console_port}/")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    api.serve_forever()


COMMANDS = {
    ("metadata", "apply"): metadata_apply,
    ("metadata", "reload"): metadata_reload,
    ("migrate", "apply"): migrate_apply,
    ("seed", "apply"): seed_apply,
    ("console",): console,
}


def parser():
    p = argparse.ArgumentParser(prog="hasura-cli")
    p.add_argument("words", nargs="*")
    for flag in ("--project", "--endpoint", "--admin-secret", "--database-name", "--console-hge-endpoint",
                 "--log-level", "--address"):
        p.add_argument(flag)
    p.add_argument("--console-port", type=int, default=9695)
    p.add_argument("--api-port", type=int, default=9693)
    for flag in ("--all-databases", "--disallow-inconsistent-metadata", "--no-browser", "--skip-update-check"):
        p.add_argument(flag, action="store_true")
    return p


def main():
    args = parser().parse_args(sys.argv[1:])
    if args.address is None:
        args.address = "localhost"
    words = tuple(args.words)
    if words[:1] == ("version",):
        print(f"hasura-cli double (LHD), following {SOURCE_TAG}")
        return
    command = COMMANDS.get(words[:2]) or COMMANDS.get(words[:1])
    if command is None:
        fatal(f"hasura-cli double: not implemented: {' '.join(words)}")
    command(Project(args), args)
