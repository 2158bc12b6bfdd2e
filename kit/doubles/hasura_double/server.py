"""A stand-in for `graphql-engine serve` (Hasura GraphQL Engine v2), for local mode only.

Each behaviour names the upstream file it follows (hasura/graphql-engine at
SOURCE_TAG, see __init__.py). The metadata and the CLI state live in the
catalog of the metadata database, as upstream keeps them, so a restarted
server, the entrypoint's temporary server and the console all see the same
state. The HTTP layer answers as App.hs and Middleware.hs do: API groups switched
off by --enabled-apis / HASURA_GRAPHQL_ENABLED_APIS answer 404, CORS
(HASURA_GRAPHQL_CORS_DOMAIN, HASURA_GRAPHQL_DISABLE_CORS) is applied to every
request, and a method no route takes gets Spock's 500. What the community edition
accepts but does not enforce (introspection disabled for roles, API limits), the
double accepts and does not enforce. Left out on purpose: mutations, subscriptions,
websockets, event triggers, actions at run time, the pgdump/config/developer/metrics
endpoints, every data source kind but PostgreSQL.

Modules: server.py (HTTP, `serve`, `main`), engine.py (sources, GraphQL, metadata and
query APIs), auth.py (who a request is), catalog.py (the metadata database),
config.py (server options, CORS, API errors).
"""

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import psycopg

from hasura_double import SOURCE_TAG
from hasura_double.catalog import query
from hasura_double.config import DEFAULT_APIS, Cors, Failure, env_value, fatal, log, option_fatal, read_apis
from hasura_double.engine import Engine

VERSION = f"{SOURCE_TAG}-lhd-double"


# --- HTTP -------------------------------------------------------------------------------

NOT_FOUND = {"error": "resource does not exist", "path": "$", "code": "not-found"}
# server/src-lib/Hasura/Server/App.hs (httpApp): the routes the double serves and the API group
# (--enabled-apis) each belongs to; onlyWhenApiEnabled answers 404 NOT_FOUND when the group is
# off. /healthz, /hasura/healthz and /v1/version belong to none and are always served.
# /v1/metadata, /v1/query, /v2/query, /v1/graphql/explain: "metadata"; /v1/graphql: "graphql".
# GET /v1alpha1/config: "config" (docs/docs/api-reference/config.mdx: an admin-only GET answering the
# server's configuration; server/tests-py/test_config_api.py: 200 with is_admin_secret_set, is_jwt_set...,
# 400 for another role).
ROUTES = {("POST", "/v1/graphql"): "graphql", ("GET", "/v1/graphql"): "graphql",
          ("POST", "/v1/metadata"): "metadata", ("POST", "/v2/query"): "metadata",
          ("GET", "/v1alpha1/config"): "config"}


def make_handler(engine):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        cors = ()

        def log_message(self, fmt, *args):
            log("http-log", request=fmt % args)

        def reply(self, status, body, content_type="application/json", extra=()):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in list(extra) + list(self.cors):
                self.send_header(name, value)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":  # warp sends no body for HEAD
                self.wfile.write(data)

        def headers_lower(self):
            return {k.lower(): v for k, v in self.headers.items()}

        def dispatch(self):
            """Middleware.hs (corsMiddleware) sees every request before the routes do."""
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            origin = self.headers.get("Origin")
            self.cors = ()
            if engine.cors.allows(origin):
                if self.command == "OPTIONS":  # respondPreFlight: 204, answered here, for any path
                    self.send_response(204)
                    for name, value in (Cors.preflight_headers(self.headers.get("Access-Control-Request-Headers"))
                                        + Cors.headers(origin)):
                        self.send_header(name, value)
                    self.end_headers()
                    return None
                self.cors = Cors.headers(origin)  # injectCorsHeaders on the route's own answer
            path, _, query_string = self.path.partition("?")
            if self.command == "GET" and path in ("/healthz", "/hasura/healthz"):
                return self.healthz(parse_qs(query_string).get("strict", ["false"])[0] == "true")
            if self.command == "GET" and path == "/v1/version":
                return self.reply(200, {"version": VERSION})
            group = ROUTES.get((self.command, path))
            if group is None:
                if self.command in ("GET", "POST"):  # App.hs: the hookAny GET/POST fallback
                    return self.reply(404, NOT_FOUND)
                # Any other method (OPTIONS from an origin CORS does not allow, PUT, DELETE...)
                # has no route at all: Spock-core (agrafix/Spock@40d028b, the commit cabal.project
                # pins) Web/Spock/Internal/Wire.hs applyAction [] calls the error handler, which
                # App.hs mkSpockConfig sets to spockInternalErrorHandler: always 500, no
                # Content-Type.
                return self.reply(500, {"error": "Internal Server Error", "path": "$", "code": "unexpected"},
                                  content_type=None)
            if group not in engine.apis:  # onlyWhenApiEnabled, before the body is looked at
                return self.reply(404, NOT_FOUND)
            headers = self.headers_lower()
            if path == "/v1alpha1/config":
                return self.config(headers)
            if self.command == "GET":  # /v1/graphql over GET: only persisted queries, not in CE
                return self.reply(200, engine.graphql_get(headers))
            try:
                payload = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                return self.reply(400, {"error": "invalid json", "path": "$", "code": "invalid-json"})
            if path == "/v1/graphql":
                return self.reply(200, engine.graphql(headers, payload))
            try:
                role = engine.auth.session(headers)
                if role != "admin":  # server/src-lib/Hasura/App.hs: authorizeV1QueryApi / accessDeniedErrMsg
                    raise Failure(400, "access-denied", "restricted access : admin only", "$.args")
                api = engine.metadata_api if path == "/v1/metadata" else engine.query_api
                status, body = api(payload)
            except Failure as failure:
                return self.reply(failure.status, failure.body())
            return self.reply(status, body)

        do_GET = do_POST = do_OPTIONS = do_PUT = do_PATCH = do_DELETE = do_HEAD = dispatch

        def config(self, headers):
            """The config API: admin only (tests-py/test_config_api.py: another role gets 400); the fields the
            double can know, named as in docs/docs/api-reference/config.mdx."""
            try:
                if engine.auth.session(headers) != "admin":
                    raise Failure(400, "access-denied", "restricted access : admin only", "$")
            except Failure as failure:
                return self.reply(failure.status, failure.body())
            return self.reply(200, {"version": VERSION, "is_admin_secret_set": bool(engine.auth.admin_secret),
                                    "is_auth_hook_set": False, "is_jwt_set": engine.auth.jwt is not None})

        def healthz(self, strict):
            """server/src-lib/Hasura/Server/App.hs (healthzAction): metadata storage down -> 500
            "ERROR"; inconsistent objects -> 200 "WARN: ..." or, with ?strict=true, 500 "ERROR: ..."."""
            try:
                query(engine.catalog.url, "SELECT 1")
            except psycopg.Error:
                return self.reply(500, "ERROR", "text/plain")
            if engine.inconsistent:
                if strict:
                    return self.reply(500, "ERROR: inconsistent objects in schema", "text/plain")
                return self.reply(200, "WARN: inconsistent objects in schema", "text/plain")
            return self.reply(200, "OK", "text/plain")

    return Handler


def wait_for_database(url, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            query(url, "SELECT 1")
            return
        except psycopg.Error as exc:
            if time.monotonic() > deadline:
                log("startup", kind="db_init", error=str(exc).strip())
                fatal(f"Fatal Error: could not connect to the metadata database: {str(exc).strip()}")
            time.sleep(1)


def serve(argv):
    """`graphql-engine serve [--server-port N] [--enabled-apis a,b]` (flags as in
    server/src-lib/Hasura/Server/Init/Arg/Command/Serve.hs).

    A flag wins over its variable, which is then not even read (Init/Env.hs withOptionDefault:
    `onNothing parsed (... considerEnv _envVar)`): the entrypoint's temporary server
    (`--enabled-apis="metadata"`) serves the metadata API whatever HASURA_GRAPHQL_ENABLED_APIS
    says, and a value the main server would refuse does not stop it."""
    parser = argparse.ArgumentParser(prog="graphql-engine serve")
    parser.add_argument("--server-port", type=int, default=int(os.environ.get("HASURA_GRAPHQL_SERVER_PORT", "8080")))
    parser.add_argument("--enabled-apis")
    args = parser.parse_args(argv)
    if args.enabled_apis is None:
        apis = env_value(os.environ, "HASURA_GRAPHQL_ENABLED_APIS", read_apis, read_apis(DEFAULT_APIS))
    else:
        try:
            apis = read_apis(args.enabled_apis)
        except ValueError as exc:  # optparse-applicative eitherReader: the option named, exit 1
            option_fatal(f"option --enabled-apis: {exc}")
    engine = Engine(os.environ, apis)
    wait_for_database(engine.catalog.url, float(os.environ.get("LHD_DOUBLE_DB_TIMEOUT", "20")))
    engine.catalog.prepare()
    engine.load()
    if engine.inconsistent:
        log("startup", kind="schema-sync", message="inconsistent objects in schema", inconsistent=engine.inconsistent)
    server = ThreadingHTTPServer(("0.0.0.0", args.server_port), make_handler(engine))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # graceful stop on SIGTERM, like graphql-engine
    log("startup", kind="server", message=f"serving on port {args.server_port}", version=VERSION)
    server.serve_forever()


def main():
    args = sys.argv[1:]
    if args[:1] == ["graphql-engine"]:
        args = args[1:]
    if args[:1] == ["version"]:
        print(VERSION)
        return
    if args[:1] != ["serve"]:
        fatal(f"graphql-engine double: only `serve` and `version` are implemented, not {args[:1]}")
    serve(args[1:])
