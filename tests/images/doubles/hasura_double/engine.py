"""A stand-in for Hasura GraphQL Engine v2, for local-mode tests only.

Cited facts are from ../shared/contracts.md, section "Hasura GraphQL Engine v2"
(marked [C:...] below). Anything the generated project does not use is left
out on purpose; unknown requests get Hasura-shaped errors.
"""

import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import yaml
from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    graphql_sync,
)
from psycopg import sql

VERSION = "v2.51.0-lhd-double"
ACCESS_DENIED = "x-hasura-admin-secret/x-hasura-access-key required, but not found"  # [C: /v1/graphql]
CLAIMS = "https://hasura.io/jwt/claims"


def log(log_type, **detail):
    print(json.dumps({"type": log_type, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "detail": detail}), flush=True)


# --- metadata (CLI config v3 layout) [C: metadata layout] ------------------------

def load_yaml_include(path):
    value = yaml.safe_load(Path(path).read_text())
    return resolve_includes(value, Path(path).parent)


def resolve_includes(value, base):
    if isinstance(value, str) and value.startswith("!include "):
        return load_yaml_include(base / value.split(" ", 1)[1])
    if isinstance(value, list):
        return [resolve_includes(v, base) for v in value]
    if isinstance(value, dict):
        return {k: resolve_includes(v, base) for k, v in value.items()}
    return value


def load_metadata(directory):
    """Read a metadata directory into Hasura's export_metadata JSON shape."""
    directory = Path(directory)
    sources = load_yaml_include(directory / "databases/databases.yaml") or []
    for source in sources:
        source["tables"] = source.get("tables") or []
    return {"version": 3, "sources": sources}


# --- database --------------------------------------------------------------------

class Database:
    def __init__(self, url):
        self.url = url

    def connect(self):
        return psycopg.connect(self.url, connect_timeout=3, autocommit=True)

    def query(self, statement, params=()):
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(statement, params)
            if cur.description is None:
                return None, []
            return [d.name for d in cur.description], cur.fetchall()

    def columns(self, schema, table):
        _, rows = self.query(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (schema, table))
        return rows

    def primary_key(self, schema, table):
        _, rows = self.query(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary", (f'"{schema}"."{table}"',))
        return [r[0] for r in rows]


SCALARS = {}


def scalar(name):
    """Hasura names Postgres scalars after the Postgres type (bigint, timestamptz...)."""
    if name not in SCALARS:
        SCALARS[name] = GraphQLScalarType(name, serialize=lambda v: v.isoformat() if hasattr(v, "isoformat") else v)
    return SCALARS[name]


def graphql_type(pg_type):
    return {
        "integer": GraphQLInt, "smallint": GraphQLInt, "text": GraphQLString, "character varying": GraphQLString,
        "boolean": GraphQLBoolean, "double precision": GraphQLFloat, "real": GraphQLFloat,
        "bigint": scalar("bigint"), "timestamp with time zone": scalar("timestamptz"),
        "timestamp without time zone": scalar("timestamp"), "numeric": scalar("numeric"), "uuid": scalar("uuid"),
        "jsonb": scalar("jsonb"), "date": scalar("date"),
    }.get(pg_type, GraphQLString)


ORDER_BY = GraphQLEnumType("order_by", {"asc": "ASC", "desc": "DESC"})


# --- the engine --------------------------------------------------------------------

class Engine:
    def __init__(self, env):
        self.env = env
        self.admin_secret = env.get("HASURA_GRAPHQL_ADMIN_SECRET")
        jwt = env.get("HASURA_GRAPHQL_JWT_SECRET")
        self.jwt = json.loads(jwt) if jwt else None
        self.unauthorized_role = env.get("HASURA_GRAPHQL_UNAUTHORIZED_ROLE")
        self.db = Database(env["HASURA_GRAPHQL_DATABASE_URL"])
        self.metadata = {"version": 3, "sources": []}
        self.inconsistent = []
        self.schemas = {}
        self.lock = threading.Lock()

    # consistency + schema generation
    def tables(self):
        for source in self.metadata["sources"]:
            for entry in source.get("tables", []):
                yield source["name"], entry

    def check_consistency(self, metadata):
        problems = []
        for source in metadata["sources"]:
            for entry in source.get("tables", []):
                t = entry["table"]
                if not self.db.columns(t.get("schema", "public"), t["name"]):
                    reason = f"Inconsistent object: no such table/view exists in source: \"{t['name']}\""
                    problems.append({"type": "table", "reason": reason,
                                     "name": f"table {t['name']} in source {source['name']}"})
        return problems

    def set_metadata(self, metadata):
        problems = self.check_consistency(metadata)
        with self.lock:
            self.metadata = metadata
            self.inconsistent = problems
            self.schemas = {}
        return problems

    def schema_for(self, role):
        with self.lock:
            if role not in self.schemas:
                self.schemas[role] = self.build_schema(role)
            return self.schemas[role]

    def build_schema(self, role):
        fields = {}
        for _, entry in self.tables():
            t = entry["table"]
            schema_name, name = t.get("schema", "public"), t["name"]
            columns = self.db.columns(schema_name, name)
            if not columns:
                continue
            permission = None
            if role != "admin":
                perms = [p for p in entry.get("select_permissions", []) if p["role"] == role]
                if not perms:
                    continue
                permission = perms[0]["permission"]
                allowed = set(permission.get("columns", []))
                columns = [c for c in columns if c[0] in allowed]
            gql_name = name if schema_name == "public" else f"{schema_name}_{name}"
            object_type = GraphQLObjectType(gql_name, {
                c[0]: GraphQLField(graphql_type(c[1]) if c[2] == "YES" else GraphQLNonNull(graphql_type(c[1])))
                for c in columns})
            comparison = {c[0]: GraphQLInputField(GraphQLInputObjectType(
                f"{gql_name}_{c[0]}_comparison_exp", {"_eq": GraphQLInputField(graphql_type(c[1]))})) for c in columns}
            where = GraphQLInputObjectType(f"{gql_name}_bool_exp", comparison)
            order = GraphQLInputObjectType(f"{gql_name}_order_by", {c[0]: GraphQLInputField(ORDER_BY) for c in columns})
            fields[gql_name] = GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(object_type))),
                args={"limit": GraphQLArgument(GraphQLInt), "offset": GraphQLArgument(GraphQLInt),
                      "where": GraphQLArgument(where), "order_by": GraphQLArgument(GraphQLList(GraphQLNonNull(order)))},
                resolve=self.resolver(schema_name, name, [c[0] for c in columns], permission))
        if not fields:
            fields["no_queries_available"] = GraphQLField(GraphQLString, resolve=lambda *_: "")
        return GraphQLSchema(GraphQLObjectType("query_root", fields))

    def resolver(self, schema_name, table, columns, permission):
        def resolve(_, info, limit=None, offset=None, where=None, order_by=None):
            selected = [f.name.value for f in info.field_nodes[0].selection_set.selections
                        if getattr(f, "name", None) and f.name.value in columns] or columns[:1]
            clauses, params = [], []
            filters = dict((permission or {}).get("filter") or {})
            for column, exp in list(filters.items()) + list((where or {}).items()):
                for op, value in exp.items():
                    if op != "_eq":
                        raise GraphQLError(f"operator {op} is not supported by the double")
                    clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                    params.append(value)
            statement = sql.SQL("SELECT {} FROM {}.{}").format(
                sql.SQL(", ").join(map(sql.Identifier, selected)), sql.Identifier(schema_name), sql.Identifier(table))
            if clauses:
                statement += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses)
            if order_by:
                parts = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(d)) for o in order_by for c, d in o.items()]
                statement += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(parts)
            cap = (permission or {}).get("limit")
            limit = min(x for x in (limit, cap) if x is not None) if (limit is not None or cap) else None
            if limit is not None:
                statement += sql.SQL(" LIMIT {}").format(sql.Literal(int(limit)))
            if offset:
                statement += sql.SQL(" OFFSET {}").format(sql.Literal(int(offset)))
            names, rows = self.db.query(statement, params)
            return [dict(zip(names, row, strict=True)) for row in rows]
        return resolve

    # auth [C: /v1/graphql access-denied; JWT secret]
    def role_for(self, headers):
        secret = headers.get("x-hasura-admin-secret") or headers.get("x-hasura-access-key")
        if secret is not None:
            if self.admin_secret is None or hmac.compare_digest(secret, self.admin_secret):
                return headers.get("x-hasura-role", "admin"), None
            return None, ("access-denied", "invalid x-hasura-admin-secret/x-hasura-access-key")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self.jwt:
            claims = self.verify_jwt(auth.split(" ", 1)[1])
            if claims is None:
                return None, ("invalid-jwt", "Could not verify JWT: JWSError JWSInvalidSignature")
            hasura = claims.get(CLAIMS, {})
            role = headers.get("x-hasura-role") or hasura.get("x-hasura-default-role")
            if role not in hasura.get("x-hasura-allowed-roles", [role]):
                return None, ("access-denied", "Your requested role is not in allowed roles")
            return role, None
        if self.admin_secret is None:
            return "admin", None
        if self.unauthorized_role:
            return self.unauthorized_role, None
        return None, ("access-denied", ACCESS_DENIED)

    def verify_jwt(self, token):
        try:
            head, body, signature = token.split(".")
            expected = hmac.new(self.jwt["key"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
            given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            if self.jwt.get("type") != "HS256" or not hmac.compare_digest(expected, given):
                return None
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            if claims.get("exp") and claims["exp"] < time.time():
                return None
            return claims
        except (ValueError, KeyError, json.JSONDecodeError):
            return None

    def graphql(self, headers, payload):
        role, error = self.role_for(headers)
        if error:
            return {"errors": [{"extensions": {"path": "$", "code": error[0]}, "message": error[1]}]}
        result = graphql_sync(self.schema_for(role), payload.get("query") or "",
                              variable_values=payload.get("variables"), operation_name=payload.get("operationName"))
        if result.errors:
            code = "validation-failed" if result.data is None else "unexpected"
            return {"errors": [{"extensions": {"path": "$", "code": code}, "message": e.message} for e in result.errors]}
        return {"data": result.data}


def sign_jwt(key, claims):
    """Make an HS256 JWT (used by tests to act as a signed-in user)."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{signature}"


# --- HTTP -----------------------------------------------------------------------

def make_handler(engine):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            log("http-log", request=fmt % args)

        def reply(self, status, body, content_type="application/json"):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def headers_lower(self):
            return {k.lower(): v for k, v in self.headers.items()}

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                return json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                return None

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path in ("/healthz", "/hasura/healthz"):  # [C: GET /healthz]
                try:
                    engine.db.query("SELECT 1")
                except psycopg.Error:
                    return self.reply(500, "ERROR", "text/plain")
                if engine.inconsistent:
                    if "strict=true" in query:
                        return self.reply(500, "ERROR: inconsistent objects in schema", "text/plain")
                    return self.reply(200, "WARN: inconsistent objects in schema", "text/plain")
                return self.reply(200, "OK", "text/plain")
            if path == "/v1/version":
                return self.reply(200, {"version": VERSION})
            return self.reply(404, {"path": "$", "error": "resource does not exist", "code": "not-found"})

        def do_POST(self):
            payload = self.body()
            if payload is None:
                return self.reply(400, {"path": "$", "error": "invalid json", "code": "invalid-json"})
            headers = self.headers_lower()
            if self.path == "/v1/graphql":  # [C: /v1/graphql answers 200 even for errors]
                return self.reply(200, engine.graphql(headers, payload))
            if self.path in ("/v1/metadata", "/v2/query"):
                role, error = engine.role_for(headers)
                if error or role != "admin":  # [C: JSON API errors]
                    message = error[1] if error else "restricted access : admin only"
                    return self.reply(400, {"path": "$", "error": message, "code": "access-denied"})
                handler = metadata_api if self.path == "/v1/metadata" else query_api
                status, body = handler(engine, payload)
                return self.reply(status, body)
            return self.reply(404, {"path": "$", "error": "resource does not exist", "code": "not-found"})

    return Handler


def metadata_api(engine, payload):
    """export/replace/reload_metadata, pg_track_table(s) [C: Metadata API]."""
    kind, args = payload.get("type"), payload.get("args") or {}
    if kind == "export_metadata":
        return 200, engine.metadata
    if kind == "reload_metadata":
        engine.set_metadata(engine.metadata)
        return 200, {"message": "success", "is_consistent": not engine.inconsistent}
    if kind == "replace_metadata":
        metadata = args.get("metadata", args)
        problems = engine.check_consistency(metadata)
        if problems and not args.get("allow_inconsistent_metadata"):
            return 400, {"path": "$.args", "error": "cannot continue due to inconsistent metadata",
                         "code": "unexpected", "internal": problems}
        engine.set_metadata(metadata)
        return 200, {"message": "success"}
    if kind in ("pg_track_table", "pg_track_tables"):
        items = args.get("tables", []) if kind == "pg_track_tables" else [args]
        metadata = json.loads(json.dumps(engine.metadata, default=str))
        for item in items:
            table = item["table"] if isinstance(item["table"], dict) else {"schema": "public", "name": item["table"]}
            source = next((s for s in metadata["sources"] if s["name"] == item.get("source", "default")), None)
            if source is None:
                return 400, {"path": "$.args.source", "error": "source not found", "code": "not-exists"}
            if any(t["table"] == table for t in source["tables"]):
                return 400, {"path": "$.args", "error": f"view/table already tracked: \"{table['name']}\"",
                             "code": "already-tracked"}
            source["tables"].append({"table": table})
        problems = engine.check_consistency(metadata)
        if problems:
            return 400, {"path": "$.args", "error": problems[0]["reason"], "code": "invalid-configuration"}
        engine.set_metadata(metadata)
        return 200, {"message": "success"}
    return 400, {"path": "$.type", "error": f"unknown metadata command \"{kind}\"", "code": "parse-failed"}


def query_api(engine, payload):
    """run_sql on the default source [C: Schema API /v2/query]."""
    if payload.get("type") != "run_sql":
        return 400, {"path": "$.type", "error": f"unknown query type \"{payload.get('type')}\"", "code": "parse-failed"}
    try:
        names, rows = engine.db.query(payload["args"]["sql"])
    except psycopg.Error as exc:
        return 400, {"path": "$", "error": "query execution failed", "code": "postgres-error",
                     "internal": {"error": {"message": str(exc).strip()}}}
    engine.schemas = {}
    if names is None:
        return 200, {"result_type": "CommandOk", "result": None}
    return 200, {"result_type": "TuplesOk",
                 "result": [names] + [[None if v is None else str(v) for v in row] for row in rows]}


# --- start-up like cli-migrations-v3 [C: cli-migrations-v3 image at start] ------------

def apply_migrations(engine, directory):
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    engine.db.query("CREATE SCHEMA IF NOT EXISTS hdb_catalog")
    engine.db.query("CREATE TABLE IF NOT EXISTS hdb_catalog.schema_migrations "
                    "(version bigint PRIMARY KEY, dirty boolean NOT NULL)")
    applied = 0
    for up in sorted(directory.glob("*/*/up.sql")):
        version = int(up.parent.name.split("_")[0])
        _, done = engine.db.query("SELECT 1 FROM hdb_catalog.schema_migrations WHERE version = %s", (version,))
        if done:
            continue
        engine.db.query(up.read_text())
        engine.db.query("INSERT INTO hdb_catalog.schema_migrations VALUES (%s, false)", (version,))
        applied += 1
    return applied


def wait_for_database(engine, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            engine.db.query("SELECT 1")
            return
        except psycopg.Error as exc:
            if time.monotonic() > deadline:
                log("startup", kind="postgres_connection", error=str(exc).strip())
                print(f"FATAL: cannot connect to the database: {str(exc).strip()}", file=sys.stderr, flush=True)
                sys.exit(1)
            time.sleep(1)


def serve(argv):
    env = os.environ
    if not env.get("HASURA_GRAPHQL_DATABASE_URL") and not env.get("HASURA_GRAPHQL_METADATA_DATABASE_URL"):
        print("Fatal Error: Either of --metadata-database-url or --database-url option expected", file=sys.stderr)
        sys.exit(1)
    if env.get("HASURA_GRAPHQL_JWT_SECRET") and not env.get("HASURA_GRAPHQL_ADMIN_SECRET"):
        print("Fatal Error: HASURA_GRAPHQL_ADMIN_SECRET is mandatory when JWT secret is set", file=sys.stderr)
        sys.exit(1)
    if env.get("HASURA_GRAPHQL_JWT_SECRET"):
        try:
            jwt = json.loads(env["HASURA_GRAPHQL_JWT_SECRET"])
            assert jwt.get("type") == "HS256" and len(jwt.get("key", "")) >= 32
        except (json.JSONDecodeError, AssertionError):
            print("Fatal Error: HASURA_GRAPHQL_JWT_SECRET: key size too small or invalid JSON", file=sys.stderr)
            sys.exit(1)
    engine = Engine(env)
    wait_for_database(engine, float(env.get("LHD_DOUBLE_DB_TIMEOUT", "20")))
    metadata_dir = env.get("HASURA_GRAPHQL_METADATA_DIR", "/hasura-metadata")
    migrations_dir = env.get("HASURA_GRAPHQL_MIGRATIONS_DIR", "/hasura-migrations")
    log("startup", kind="migrations-startup", message="applying migrations", applied=apply_migrations(engine, migrations_dir))
    if Path(metadata_dir, "databases/databases.yaml").is_file():
        problems = engine.set_metadata(load_metadata(metadata_dir))
        if problems:
            log("startup", kind="metadata-apply", inconsistent=problems)
            print("FATAL: metadata is inconsistent: " + "; ".join(p["reason"] for p in problems), file=sys.stderr)
            sys.exit(1)
        log("startup", kind="metadata-apply", message="metadata applied")
    port = int(env.get("HASURA_GRAPHQL_SERVER_PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), make_handler(engine))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # graceful stop, like graphql-engine
    log("startup", kind="server", message=f"serving on port {port}", version=VERSION)
    server.serve_forever()


def main():
    args = sys.argv[1:]
    if args[:1] == ["graphql-engine"]:
        args = args[1:]
    if args and args[0] == "version":
        print(VERSION)
        return
    if args and args[0] != "serve":
        print(f"graphql-engine double: unsupported command {args[0]!r}", file=sys.stderr)
        sys.exit(1)
    serve(args)
