"""What a "compiled" Lucky binary does. Facts cited from ../shared/contracts.md
("Lucky") as [C:...]; the messages match the generated config/*.cr files."""

import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from psycopg import sql

from lucky_double import program as programs


def env():
    return os.environ.get("LUCKY_ENV", "development")


def required(name):
    """[C: production env] the app exits without these."""
    value = os.environ.get(name)
    if not value:
        print(f"Missing environment variable {name}: the app cannot start without it.", file=sys.stderr, flush=True)
        sys.exit(1)
    return value


def database_url():
    url = os.environ.get("DATABASE_URL")
    if not url:
        if env() == "production":
            required("DATABASE_URL")
        url = f"postgres://postgres:postgres@localhost:5432/app_{env()}"
    return url


def connect(url=None, **kw):
    return psycopg.connect(url or database_url(), connect_timeout=5, autocommit=True, **kw)


# --- tasks [C: task runner commands; migrations table] ------------------------------

def ensure_migrations_table(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (id bigserial PRIMARY KEY, version bigint NOT NULL)")


def applied_versions(conn):
    ensure_migrations_table(conn)
    return {row[0] for row in conn.execute("SELECT version FROM migrations").fetchall()}


def db_create(_program, _args):
    url = urllib.parse.urlparse(database_url())
    name = url.path.lstrip("/")
    admin = url._replace(path="/postgres").geturl()
    with connect(admin) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            print(f"Already created {name}")
            return
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    print(f"Done creating {name}")


def db_migrate(program, _args):
    with connect() as conn:
        done = applied_versions(conn)
        pending = [m for m in program["migrations"] if m["version"] not in done]
        if not pending:
            print("Did not migrate anything because there are no pending migrations.")
        for migration in pending:
            with conn.transaction():
                for statement in migration["up"]:
                    conn.execute(statement)
                conn.execute("INSERT INTO migrations (version) VALUES (%s)", (migration["version"],))
            print(f"Migrated {migration['name']}")


def db_rollback_to(program, args):
    if len(args) != 1 or not args[0].isdigit():
        print("Migration version is missing. Example: lucky db.rollback_to 20180802180356", file=sys.stderr)
        sys.exit(1)
    target = int(args[0])
    known = {m["version"]: m for m in program["migrations"]}
    with connect() as conn:
        newer = sorted((v for v in applied_versions(conn) if v > target), reverse=True)
        if not newer:
            print("Did not roll anything back because there are no newer migrations.")
        for version in newer:
            if version not in known:
                print(f"Cannot roll back migration {version}: this build does not know it", file=sys.stderr)
                sys.exit(1)
            with conn.transaction():
                for statement in known[version]["down"]:
                    conn.execute(statement)
                conn.execute("DELETE FROM migrations WHERE version = %s", (version,))
            print(f"Rolled back {known[version]['name']}")


def seed_required(_program, _args):
    with connect() as conn:
        conn.execute("SELECT 1")
    print("Done adding required data")


def seed_sample(program, _args):
    with connect() as conn:
        for note in program.get("sample_notes", []):
            if conn.execute("SELECT 1 FROM notes WHERE title = %s", (note["title"],)).fetchone():
                continue
            conn.execute("INSERT INTO notes (title, body, published) VALUES (%s, %s, %s)",
                         (note["title"], note["body"], note["published"]))
    print("Done adding sample data")


TASKS = {"db.create": db_create, "db.migrate": db_migrate, "db.rollback_to": db_rollback_to,
         "db.seed.required_data": seed_required, "db.seed.sample_data": seed_sample}


def run_task(program, args):
    if not args or args[0] not in TASKS:
        print(f"Task '{args[0] if args else ''}' not found. Known: {', '.join(TASKS)}", file=sys.stderr)
        sys.exit(1)
    try:
        TASKS[args[0]](program, args[1:])
    except psycopg.Error as exc:
        print(f"Unable to run {args[0]}: {str(exc).strip()}", file=sys.stderr)
        sys.exit(1)


# --- server [C: PORT required, production binds 0.0.0.0, APP_VERSION at /version] ---

def serve(program):
    if env() == "production":
        for name in ("SECRET_KEY_BASE", "PORT", "DATABASE_URL", "APP_DOMAIN", "SEND_GRID_KEY"):
            required(name)
    port = int(os.environ.get("PORT") or 5000)
    version = os.environ.get("APP_VERSION") or "development"
    if env() == "development":  # like Avram's ensure_migrated! in src/start_server.cr
        try:
            with connect() as conn:
                pending = [m for m in program["migrations"] if m["version"] not in applied_versions(conn)]
        except psycopg.Error as exc:
            print(f"Unable to connect to the database: {str(exc).strip()}", file=sys.stderr, flush=True)
            sys.exit(1)
        if pending:
            print("There are pending migrations. Please run lucky db.migrate", file=sys.stderr, flush=True)
            sys.exit(1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            print(json.dumps({"severity": "Info", "message": fmt % args}), flush=True)

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/version":
                return self.reply(200, {"version": version, "built_at": program.get("built_at"), "environment": env()})
            if path == "/":
                return self.reply(200, {"name": "lucky", "graphql": "/v1/graphql", "version": version})
            if path == "/api/notes":
                try:
                    with connect() as conn:
                        rows = conn.execute("SELECT id, title, body, published FROM notes WHERE published "
                                            "ORDER BY created_at DESC").fetchall()
                except psycopg.Error:
                    return self.reply(500, {"message": "Something went wrong.", "details": None})
                return self.reply(200, [dict(zip(("id", "title", "body", "published"), r, strict=True)) for r in rows])
            return self.reply(404, {"message": "Not found", "details": None})

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    # Like src/start_server.cr: keep serving SHUTDOWN_DELAY seconds after SIGTERM.
    delay = float(os.environ.get("SHUTDOWN_DELAY") or 0)
    signal.signal(signal.SIGTERM, lambda *_: threading.Timer(delay, lambda: os._exit(0)).start())
    print(f"Listening on http://0.0.0.0:{port} (version {version})", flush=True)
    server.serve_forever()


def healthcheck():
    port = os.environ.get("PORT") or "5000"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=3) as answer:
            sys.exit(0 if answer.status == 200 else 1)
    except OSError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        sys.exit(1)


def lucky_cli(args):
    """`lucky watch` builds from /app and serves; `lucky <task>` runs a task."""
    project = Path.cwd()
    program = programs.compile_program("server", project)
    if args[:1] == ["watch"]:
        return serve(program)
    return run_task(program, args)


def main(program, args):
    program.setdefault("built_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    kind = program["kind"]
    if kind == "server":
        return serve(program)
    if kind == "tasks":
        return run_task(program, args)
    if kind == "healthcheck":
        return healthcheck()
    if kind == "lucky_cli":
        return lucky_cli(args)
    raise SystemExit(f"unknown program kind {kind}")
