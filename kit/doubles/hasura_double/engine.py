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
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import psycopg
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

from hasura_double import SOURCE_TAG
from hasura_double.metadata import ParseFailed, inconsistencies, parse_metadata

VERSION = f"{SOURCE_TAG}-lhd-double"
CLAIMS = "https://hasura.io/jwt/claims"
EMPTY_METADATA = {"version": 3, "sources": []}
# server/src-lib/Hasura/Server/API/Metadata/Instances.hs: metadata commands that replace one object
METADATA_SETTERS = {"set_api_limits": "api_limits", "remove_api_limits": "api_limits",
                    "set_graphql_schema_introspection_options": "graphql_schema_introspection"}


def log(log_type, **detail):
    print(json.dumps({"type": log_type, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "level": "info",
                      "detail": detail}), flush=True)


def fatal(message):
    """How graphql-engine reports a configuration it refuses: one line on stderr, exit 1."""
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def option_fatal(message):
    """How graphql-engine refuses a server option it cannot read: server/src-lib/Hasura/App.hs
    (parseArgs: throwErrExit InvalidEnvironmentVariableOptionsError) and server/src-exec/Main.hs
    (`BC.putStrLn msg >> Sys.exitFailure`): the message on stdout, exit 1."""
    print(message, flush=True)
    sys.exit(1)


def env_value(env, name, read, default):
    """server/src-lib/Hasura/Server/Init/Env.hs (considerEnv, withOptionDefault): an unset
    variable gives the default; a value `read` refuses stops the server naming the variable."""
    if name not in env:
        return default
    try:
        return read(env[name])
    except ValueError as exc:
        option_fatal(f"Fatal Error:- Environment variable {name}: {exc}")


def read_bool(text):
    """Init/Env.hs (instance FromEnv Bool): case-insensitive true/t/yes/y and false/f/no/n."""
    if text.lower() in ("true", "t", "yes", "y"):
        return True
    if text.lower() in ("false", "f", "no", "n"):
        return False
    raise ValueError(' Not a valid boolean text. True values are ["true","t","yes","y"] and  False values are '
                     '["false","f","no","n"]. All values are case insensitive')


# server/src-lib/Hasura/Server/Init/Config.hs (data API) and Init/Env.hs (FromEnv (HashSet API)).
API_NAMES = ("metadata", "graphql", "pgdump", "developer", "config", "metrics")
# server/src-lib/Hasura/Server/Init/Arg/Command/Serve.hs (enabledAPIsOption._default)
DEFAULT_APIS = "metadata,graphql,pgdump,config"


def read_apis(text):
    """Init/Env.hs: split on ",", strip, compare upper-cased; any other word (an empty value
    too) is refused. The double serves `metadata` (/v1/metadata, /v2/query) and `graphql`
    (/v1/graphql); the other groups it knows by name but serves nothing for them."""
    apis = set()
    for word in text.split(","):
        if word.strip().lower() not in API_NAMES:
            raise ValueError("Only expecting list of comma separated API types "
                             "metadata,graphql,pgdump,developer,config,metrics")
        apis.add(word.strip().lower())
    return apis


class Cors:
    """CORS as server/src-lib/Hasura/Server/Cors.hs (readCorsDomains, inWildcardList) and
    Hasura/Server/Middleware.hs (corsMiddleware) answer it; configuration from
    Init.hs (mkCorsConfig) and Init/Arg/Command/Serve.hs (corsDomainOption, disableCorsOption,
    wsReadCookieOption).

    HASURA_GRAPHQL_DISABLE_CORS=true wins over HASURA_GRAPHQL_CORS_DOMAIN; the domain list
    defaults to "*" (every origin). Otherwise it is comma separated, each entry scheme://host
    with an optional :port, or scheme://*.host[:port] where the wildcard stands for exactly
    one leftmost label. An entry without a scheme stops the server."""

    def __init__(self, env):
        self.disabled = env_value(env, "HASURA_GRAPHQL_DISABLE_CORS", read_bool, False)
        self.allow_all, self.fqdns, self.wildcards = False, set(), set()
        if not self.disabled:
            self.allow_all, self.fqdns, self.wildcards = env_value(
                env, "HASURA_GRAPHQL_CORS_DOMAIN", self.read_domains, (True, set(), set()))
        ws_read_cookie = env_value(env, "HASURA_GRAPHQL_WS_READ_COOKIE", read_bool, False)
        if ws_read_cookie and not self.disabled:  # Init.hs mkCorsConfig
            option_fatal("HASURA_GRAPHQL_WS_READ_COOKIE can only be used when CORS is disabled")

    @staticmethod
    def _scheme(text):
        """Cors.hs schemeParser: one or more alphanumerics or + . - followed by "://"."""
        end = 0
        while end < len(text) and (text[end].isalnum() or text[end] in "+.-"):
            end += 1
        if end == 0 or not text.startswith("://", end):
            return None, text
        return text[:end + 3], text[end + 3:]

    @staticmethod
    def _host_port(text):
        """Cors.hs hostPortParser, portParser: text up to a ":" and the digits after it (what
        follows them is ignored); without a ":" the whole rest is the host, port and all."""
        host, colon, rest = text.partition(":")
        if not colon or not host:
            return text, None
        digits = re.match(r"\d*", rest).group(0)
        return host, int(digits) if digits else None

    @classmethod
    def _domain(cls, entry):
        scheme, rest = cls._scheme(entry)
        if scheme is None:
            raise ValueError(f"invalid domain: '{entry}'. All domains should have scheme + (optional wildcard) "
                             "host + (optional port)")
        if rest.startswith("*."):  # wildcardDomainParser
            host, port = cls._host_port(rest[2:])
            return None, (scheme, host, port)
        host, port = cls._host_port(rest)  # fqdnParser: scheme <> host <> ":port"
        return scheme + host + (f":{port}" if port is not None else ""), None

    @classmethod
    def read_domains(cls, text):
        if text == "*":
            return True, set(), set()
        fqdns, wildcards = set(), set()
        for entry in (part.strip() for part in text.split(",")):
            fqdn, wildcard = cls._domain(entry)
            if fqdn is not None:
                fqdns.add(fqdn)
            else:
                wildcards.add(wildcard)
        return False, fqdns, wildcards

    def allows(self, origin):
        """Middleware.hs handleCors: no Origin, or CORS disabled, or an origin not listed: the
        request goes on untouched and its answer carries no CORS header."""
        if origin is None or self.disabled:
            return False
        if self.allow_all or origin in self.fqdns:
            return True
        # Cors.hs originParser: drop everything up to the first "." after the scheme
        scheme, rest = self._scheme(origin)
        if scheme is None or "." not in rest:
            return False
        host, port = self._host_port(rest.split(".", 1)[1])
        return (scheme, host, port) in self.wildcards

    @staticmethod
    def headers(origin):
        """Middleware.hs mkCorsHeaders: the origin echoed, credentials allowed, every method."""
        return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"),
                ("Access-Control-Allow-Methods", "GET,POST,PUT,PATCH,DELETE,OPTIONS"),
                ("Access-Control-Expose-Headers", "X-Hasura-Query-Cache-Key,X-Hasura-Query-Family-Cache-Key,Warning")]

    @staticmethod
    def preflight_headers(requested):
        """Middleware.hs mkPreFlightHeaders (sent before the CORS headers)."""
        return [("Access-Control-Max-Age", "1728000"), ("Access-Control-Allow-Headers", requested or ""),
                ("Content-Length", "0"), ("Content-Type", "text/plain charset=UTF-8")]


class Failure(Exception):
    """An API error: HTTP status, Hasura error code, message, JSON path."""

    def __init__(self, status, code, message, path="$", internal=None):
        super().__init__(message)
        self.status, self.code, self.message, self.path, self.internal = status, code, message, path, internal

    def body(self):
        # hasura-base Hasura/Base/Error.hs (ToJSON QErr, toEncoding): "error" first, then "path", "code"
        body = {"error": self.message, "path": self.path, "code": self.code}
        if self.internal is not None:
            body["internal"] = self.internal
        return body


# --- databases and the catalog ------------------------------------------------------

def connect(url):
    return psycopg.connect(url, connect_timeout=3, autocommit=True)


def query(url, statement, params=()):
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        if cur.description is None:
            return None, []
        return [d.name for d in cur.description], cur.fetchall()


class Catalog:
    """The metadata and catalog state in `hdb_catalog` of the metadata database.

    Upstream: server/src-lib/Hasura/Server/Migrate.hs creates hdb_catalog (hdb_version with
    cli_state/console_state, hdb_metadata); server/src-lib/Hasura/RQL/DDL/Metadata.hs
    (runGetCatalogState / runSetCatalogState) serves get_catalog_state / set_catalog_state,
    where config v3 CLIs keep migration state and settings, not in schema_migrations
    (cli/migrate/database/hasuradb/migration_state_catalog_state.go, settings.go)."""

    def __init__(self, url):
        self.url = url

    def prepare(self):
        query(self.url, """
            CREATE SCHEMA IF NOT EXISTS hdb_catalog;
            CREATE TABLE IF NOT EXISTS hdb_catalog.hdb_version (
              hasura_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(), version text NOT NULL,
              upgraded_on timestamptz NOT NULL DEFAULT now(),
              cli_state jsonb NOT NULL DEFAULT '{}'::jsonb, console_state jsonb NOT NULL DEFAULT '{}'::jsonb);
            CREATE TABLE IF NOT EXISTS hdb_catalog.hdb_metadata (
              id integer PRIMARY KEY, metadata json NOT NULL, resource_version integer NOT NULL DEFAULT 1);
            INSERT INTO hdb_catalog.hdb_version (version)
              SELECT '48' WHERE NOT EXISTS (SELECT 1 FROM hdb_catalog.hdb_version);
        """)

    def metadata(self):
        _, rows = query(self.url, "SELECT metadata FROM hdb_catalog.hdb_metadata WHERE id = 1")
        return rows[0][0] if rows else None

    def store(self, metadata):
        query(self.url, "INSERT INTO hdb_catalog.hdb_metadata (id, metadata) VALUES (1, %s) ON CONFLICT (id) "
                        "DO UPDATE SET metadata = EXCLUDED.metadata, resource_version = "
                        "hdb_catalog.hdb_metadata.resource_version + 1", (json.dumps(metadata),))

    def state(self):
        _, rows = query(self.url, "SELECT hasura_uuid::text, cli_state, console_state FROM hdb_catalog.hdb_version")
        uuid, cli, console = rows[0]
        return {"id": uuid, "cli_state": cli, "console_state": console}

    def set_state(self, kind, state):
        column = {"cli": "cli_state", "console": "console_state"}.get(kind)
        if column is None:
            raise Failure(400, "parse-failed", f"unexpected catalog state type: {kind}", "$.args.type")
        query(self.url, sql.SQL("UPDATE hdb_catalog.hdb_version SET {} = %s").format(sql.Identifier(column)),
              (json.dumps(state),))


SCALARS = {}


def scalar(name):
    """Hasura names PostgreSQL scalars after the PostgreSQL type (bigint, timestamptz...)."""
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
UNKNOWN_FIELD = re.compile(r"Cannot query field '(\w+)' on type '(\w+)'")


# --- authentication ------------------------------------------------------------------
# server/src-lib/Hasura/Server/Auth.hs (setupAuthMode, getUserInfoWithExpTime_) and
# server/src-lib/Hasura/Server/Auth/JWT.hs (processJwt_, withoutAuthZ).

class Auth:
    def __init__(self, env):
        self.admin_secret = env.get("HASURA_GRAPHQL_ADMIN_SECRET") or env.get("HASURA_GRAPHQL_ACCESS_KEY")
        self.unauthorized_role = env.get("HASURA_GRAPHQL_UNAUTHORIZED_ROLE") or None
        jwt = env.get("HASURA_GRAPHQL_JWT_SECRET")
        self.jwt = None
        needs = " requires --admin-secret (HASURA_GRAPHQL_ADMIN_SECRET) or  --access-key (HASURA_GRAPHQL_ACCESS_KEY) to be set"
        # Auth.hs setupAuthMode: JWT or an unauthorized role without an admin secret is fatal.
        if jwt and not self.admin_secret:
            fatal("Fatal Error : --jwt-secret (HASURA_GRAPHQL_JWT_SECRET)" + needs)
        if self.unauthorized_role and not self.admin_secret:
            fatal("Fatal Error: --unauthorized-role (HASURA_GRAPHQL_UNAUTHORIZED_ROLE)" + needs +
                  " and is not allowed when --auth-hook (HASURA_GRAPHQL_AUTH_HOOK) is set")
        if jwt:
            try:  # JWT.hs FromJSON JWTConfig; JWT/Internal.hs parseHmacKey: HS256 needs 32+ bytes
                self.jwt = json.loads(jwt)
                assert self.jwt.get("type") == "HS256", "only HS256 is implemented by the double"
                assert len(self.jwt.get("key", "")) >= 32, "Key size too small; should be atleast 32 characters"
            except (json.JSONDecodeError, AssertionError) as exc:
                fatal(f"Fatal Error: HASURA_GRAPHQL_JWT_SECRET: Invalid JWK: {exc}")

    def session(self, headers):
        """(role, error): error is a Failure with the status the metadata/query APIs use."""
        sent = headers.get("x-hasura-admin-secret") or headers.get("x-hasura-access-key")
        requested = headers.get("x-hasura-role")
        if self.admin_secret is None:  # AMNoAuth: admin unless a role header says otherwise
            return requested or "admin"
        if sent is not None:  # checkingSecretIfSent
            if not hmac.compare_digest(sent, self.admin_secret):
                # Header names are quoted since "Enforce the session variable name prefix" (98ee4e3d2,
                # 2024-07-29, before v2.43.0): Auth.hs `adminSecretHeader <<> "/" <> ...`, and
                # Data/Text/Extended.hs `(<<>) a rTxt = dquote a <> rTxt`.
                raise Failure(401, "access-denied", 'invalid "x-hasura-admin-secret"/"x-hasura-access-key"')
            return requested or "admin"
        if self.jwt is None:  # AMAdminSecret
            if self.unauthorized_role:
                return self.unauthorized_role
            raise Failure(401, "access-denied", '"x-hasura-admin-secret"/"x-hasura-access-key" required, but not found')
        auth = headers.get("authorization")  # AMAdminSecretAndJWT -> processJwt_
        if auth is None:  # withoutAuthZ
            if self.unauthorized_role:
                return self.unauthorized_role
            raise Failure(400, "invalid-headers", "Missing 'Authorization' or 'Cookie' header in JWT authentication mode")
        parts = auth.split()
        if len(parts) != 2 or parts[0] != "Bearer":
            raise Failure(400, "invalid-headers", "Malformed Authorization header")
        claims = self.verify(parts[1])
        hasura = claims.get(CLAIMS)
        if not isinstance(hasura, dict):
            raise Failure(400, "jwt-invalid-claims", f"claims key: '{CLAIMS}' not found")
        allowed = hasura.get("x-hasura-allowed-roles")
        default = hasura.get("x-hasura-default-role")
        if allowed is None:
            # Auth/JWT.hs: "JWT claim does not contain " <>> allowedRolesClaim (quoted, as above).
            raise Failure(400, "jwt-missing-role-claims", 'JWT claim does not contain "x-hasura-allowed-roles"')
        if default is None:
            raise Failure(400, "jwt-missing-role-claims", 'JWT claim does not contain "x-hasura-default-role"')
        role = requested or default
        if role not in allowed:
            raise Failure(400, "access-denied", "Your requested role is not in allowed roles")
        return role

    def verify(self, token):
        def b64(part):
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        try:
            head, body, signature = token.split(".")
            expected = hmac.new(self.jwt["key"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, b64(signature)):
                raise Failure(400, "invalid-jwt", "Could not verify JWT: JWSError JWSInvalidSignature")
            claims = json.loads(b64(body))
        except (ValueError, json.JSONDecodeError) as exc:
            raise Failure(400, "invalid-jwt", "Could not verify JWT: JWSError CompactDecodeError") from exc
        if claims.get("exp") and claims["exp"] < time.time():
            raise Failure(400, "invalid-jwt", "Could not verify JWT: JWTExpired")
        return claims


# --- the engine -----------------------------------------------------------------------

class Engine:
    def __init__(self, env, apis):
        self.env = env
        self.apis = apis
        self.auth = Auth(env)
        self.cors = Cors(env)
        url = env.get("HASURA_GRAPHQL_METADATA_DATABASE_URL") or env.get("HASURA_GRAPHQL_DATABASE_URL")
        if not url:
            fatal("Fatal Error: Either of --metadata-database-url or --database-url option expected")
        self.catalog = Catalog(url)
        self.metadata = EMPTY_METADATA
        self.inconsistent = []
        self.schemas = {}
        self.lock = threading.Lock()

    # sources
    def source_url(self, source):
        conn = (source.get("configuration") or {}).get("connection_info") or {}
        value = conn.get("database_url")
        if isinstance(value, dict) and "from_env" in value:
            return self.env.get(value["from_env"])
        return value

    def columns(self, source, schema, table):
        url = self.source_url(source)
        if not url:
            return None
        _, rows = query(url, "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                             "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (schema, table))
        return rows or None

    def column_names(self, source, schema, table):
        try:
            cols = self.columns(source, schema, table)
        except psycopg.Error:
            return None
        return [c[0] for c in cols] if cols else None

    def load(self):
        """Start-up: the stored metadata, or a `default` source on HASURA_GRAPHQL_DATABASE_URL
        when there is none yet (server/src-lib/Hasura/Server/Migrate.hs: a fresh catalog gets
        the v1-compatible default source)."""
        stored = self.catalog.metadata()
        if stored is None:
            stored = dict(EMPTY_METADATA)
            if self.env.get("HASURA_GRAPHQL_DATABASE_URL"):
                stored["sources"] = [{"name": "default", "kind": "postgres", "tables": [], "configuration": {
                    "connection_info": {"database_url": {"from_env": "HASURA_GRAPHQL_DATABASE_URL"}}}}]
        self.rebuild(parse_metadata(stored))

    def rebuild(self, metadata):
        problems = inconsistencies(metadata, self.column_names)
        with self.lock:
            self.metadata, self.inconsistent, self.schemas = metadata, problems, {}
        return problems

    # GraphQL
    def schema_for(self, role):
        with self.lock:
            if role not in self.schemas:
                self.schemas[role] = self.build_schema(role)
            return self.schemas[role]

    def build_schema(self, role):
        bad = {json.dumps(p["definition"], sort_keys=True) for p in self.inconsistent}
        fields = {}
        for source in self.metadata["sources"]:
            for entry in source.get("tables", []):
                table = entry["table"]
                if json.dumps(table, sort_keys=True) in bad:
                    continue
                columns = self.columns(source, table["schema"], table["name"])
                if not columns:
                    continue
                permission = None
                if role != "admin":
                    perms = [p for p in entry.get("select_permissions", []) if p["role"] == role
                             and json.dumps(p, sort_keys=True) not in bad]
                    if not perms:
                        continue  # a role without a select permission does not see the table at all
                    permission = perms[0]["permission"]
                    allowed = permission.get("columns")
                    if allowed != "*":
                        columns = [c for c in columns if c[0] in set(allowed)]
                name = table["name"] if table["schema"] == "public" else f"{table['schema']}_{table['name']}"
                fields[name] = self.table_field(source, table, name, columns, permission)
        if not fields:
            # server/src-lib/Hasura/GraphQL/Schema.hs: an empty query_root gets a placeholder field
            fields["no_queries_available"] = GraphQLField(GraphQLString, resolve=lambda *_: "")
        return GraphQLSchema(GraphQLObjectType("query_root", fields))

    def table_field(self, source, table, name, columns, permission):
        object_type = GraphQLObjectType(name, {
            c[0]: GraphQLField(graphql_type(c[1]) if c[2] == "YES" else GraphQLNonNull(graphql_type(c[1])))
            for c in columns})
        comparison = {c[0]: GraphQLInputField(GraphQLInputObjectType(
            f"{name}_{c[0]}_comparison_exp", {"_eq": GraphQLInputField(graphql_type(c[1]))})) for c in columns}
        where = GraphQLInputObjectType(f"{name}_bool_exp", comparison)
        order = GraphQLInputObjectType(f"{name}_order_by", {c[0]: GraphQLInputField(ORDER_BY) for c in columns})
        return GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(object_type))),
            args={"limit": GraphQLArgument(GraphQLInt), "offset": GraphQLArgument(GraphQLInt),
                  "where": GraphQLArgument(where), "order_by": GraphQLArgument(GraphQLList(GraphQLNonNull(order)))},
            resolve=self.resolver(self.source_url(source), table, [c[0] for c in columns], permission))

    def resolver(self, url, table, columns, permission):
        def resolve(_, info, limit=None, offset=None, where=None, order_by=None):
            selected = [f.name.value for f in info.field_nodes[0].selection_set.selections
                        if getattr(f, "name", None) and f.name.value in columns] or columns[:1]
            clauses, params = [], []
            filters = dict((permission or {}).get("filter") or {})
            for column, exp in list(filters.items()) + list((where or {}).items()):
                for op, value in exp.items():
                    if op != "_eq":
                        raise GraphQLError(f"operator {op} is not implemented by the double")
                    clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                    params.append(value)
            statement = sql.SQL("SELECT {} FROM {}.{}").format(
                sql.SQL(", ").join(map(sql.Identifier, selected)), sql.Identifier(table["schema"]),
                sql.Identifier(table["name"]))
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
            names, rows = query(url, statement, params)
            return [dict(zip(names, row, strict=True)) for row in rows]
        return resolve

    def graphql(self, headers, payload):
        """/v1/graphql answers HTTP 200 with {"errors": [...]} for every request-level error
        (server/src-lib/Hasura/GraphQL/Transport/HTTP.hs, encodeGQErr).

        What the community edition server (the `AppM` instances of server/src-lib/Hasura/App.hs)
        does not do, the double does not do either:
        * `graphql_schema_introspection.disabled_for_roles` is stored but not enforced:
          `executeIntrospection _ introspectionResult _ = pure $ Right $ ExecStepRaw ...`
          answers every role's introspection (its own role's schema, as here).
        * `api_limits` (depth, node, rate, time, batch) are stored but not enforced:
          `askGraphqlOperationLimit _ _ _ = pure $ ResourceLimits id`
          (server/src-lib/Hasura/Server/Limits.hs; called from GraphQL/Transport/HTTP.hs).
        Enforcing both is left to the proprietary Enterprise/Cloud build, which is not public."""
        try:
            role = self.auth.session(headers)
        except Failure as failure:
            return {"errors": [{"extensions": {"path": "$", "code": failure.code}, "message": failure.message}]}
        result = graphql_sync(self.schema_for(role), payload.get("query") or "",
                              variable_values=payload.get("variables"), operation_name=payload.get("operationName"))
        if not result.errors:
            return {"data": result.data}
        errors = []
        for error in result.errors:
            unknown = UNKNOWN_FIELD.search(error.message)
            if unknown:
                # server/lib/schema-parsers/src/Hasura/GraphQL/Parser/Internal/Parser.hs (selectionSet)
                errors.append({"extensions": {"path": f"$.selectionSet.{unknown.group(1)}", "code": "validation-failed"},
                               "message": f"field '{unknown.group(1)}' not found in type: '{unknown.group(2)}'"})
            else:
                code = "validation-failed" if result.data is None else "unexpected"
                errors.append({"extensions": {"path": "$", "code": code}, "message": error.message})
        return {"errors": errors}

    def graphql_get(self, headers):
        """GET /v1/graphql (server/src-lib/Hasura/Server/App.hs) serves only persisted queries,
        which the community edition refuses: App.hs `runPersistedQueriesGetHandler _ _ _ =
        throw400 NotSupported "PersistedQueryNotSupported"`, after the request's credentials are
        checked (mkSpockAction); maybeMod200 turns both errors into HTTP 200."""
        try:
            self.auth.session(headers)
        except Failure as failure:
            return {"errors": [{"extensions": {"path": "$", "code": failure.code}, "message": failure.message}]}
        return {"errors": [{"extensions": {"path": "$", "code": "not-supported"},
                            "message": "PersistedQueryNotSupported"}]}

    # metadata API: server/src-lib/Hasura/Server/API/Metadata.hs, Hasura/RQL/DDL/Metadata.hs
    def metadata_api(self, payload):
        kind, args = payload.get("type"), payload.get("args") or {}
        if kind == "bulk":
            return 200, [self.metadata_api(item)[1] for item in args]
        if kind == "export_metadata":
            return 200, self.metadata
        if kind in ("reload_metadata", "get_inconsistent_metadata"):
            if kind == "reload_metadata":
                self.rebuild(self.metadata)
            body = {"is_consistent": not self.inconsistent, "inconsistent_objects": self.inconsistent}
            if kind == "reload_metadata":
                body = {"message": "success", **body}
            return 200, body
        if kind == "replace_metadata":
            # v2 args: {allow_inconsistent_metadata, metadata}; v1 args: the metadata itself
            v2 = payload.get("version") == 2 or "metadata" in args
            document = args.get("metadata") if v2 else args
            allow = bool(args.get("allow_inconsistent_metadata")) if v2 else False
            try:
                parsed = parse_metadata(document, "$.args.metadata" if v2 else "$.args")
            except ParseFailed as failure:
                raise Failure(400, "parse-failed", str(failure), failure.path) from failure
            problems = inconsistencies(parsed, self.column_names)
            if problems and not allow:
                raise Failure(400, "unexpected", "cannot continue due to inconsistent metadata", "$.args", problems)
            self.catalog.store(parsed)
            self.rebuild(parsed)
            if v2:
                return 200, {"is_consistent": not problems, "inconsistent_objects": problems}
            return 200, {"message": "success"}
        if kind == "get_catalog_state":
            return 200, self.catalog.state()
        if kind == "set_catalog_state":
            self.catalog.set_state(args.get("type"), args.get("state") or {})
            return 200, {"message": "success"}
        if kind in ("pg_track_table", "pg_track_tables"):
            return self.track(kind, args)
        if kind in METADATA_SETTERS:
            return self.set_metadata_object(kind, payload.get("args"))
        raise Failure(400, "parse-failed", f"unknown metadata command \"{kind}\"", "$.type")

    def set_metadata_object(self, kind, args):
        """server/src-lib/Hasura/RQL/DDL/ApiLimit.hs (runSetApiLimits, runRemoveApiLimits) and
        RQL/DDL/GraphqlSchemaIntrospection.hs (runSetGraphqlSchemaIntrospectionOptions): the
        args replace the metadata object (parsed like the same key of replace_metadata), the
        schema is rebuilt, and the answer is {"message": "success"}. Accepted in the community
        edition, and not enforced there (see graphql())."""
        key = METADATA_SETTERS[kind]
        if args is None and kind != "remove_api_limits":
            raise Failure(400, "parse-failed", 'key "args" not found', "$")
        metadata = json.loads(json.dumps(self.metadata, default=str))
        if kind == "remove_api_limits":
            metadata.pop(key, None)
        else:
            metadata[key] = args
        try:
            parsed = parse_metadata(metadata, "$")
        except ParseFailed as failure:
            raise Failure(400, "parse-failed", str(failure), failure.path.replace(f"$.{key}", "$.args", 1)) \
                from failure
        self.catalog.store(parsed)
        self.rebuild(parsed)
        return 200, {"message": "success"}

    def track(self, kind, args):
        items = args.get("tables", []) if kind == "pg_track_tables" else [args]
        metadata = json.loads(json.dumps(self.metadata, default=str))
        for item in items:
            table = item["table"] if isinstance(item["table"], dict) else {"name": item["table"]}
            table = {"name": table["name"], "schema": table.get("schema", "public")}
            source = next((s for s in metadata["sources"] if s["name"] == item.get("source", "default")), None)
            if source is None:
                raise Failure(400, "not-exists", "source not found", "$.args.source")
            if any(t["table"] == table for t in source["tables"]):
                raise Failure(400, "already-tracked", f"view/table already tracked: \"{table['name']}\"", "$.args")
            if self.column_names(source, table["schema"], table["name"]) is None:
                raise Failure(400, "invalid-configuration",
                              f"Inconsistent object: no such table/view exists in source: \"{table['name']}\"", "$.args")
            source["tables"].append({"table": table})
        self.catalog.store(metadata)
        self.rebuild(metadata)
        return 200, {"message": "success"}

    def query_api(self, payload):
        """/v2/query run_sql (server/src-lib/Hasura/Backends/Postgres/DDL/RunSQL.hs, runRunSQL)."""
        if payload.get("type") != "run_sql":
            raise Failure(400, "parse-failed", f"unknown query type \"{payload.get('type')}\"", "$.type")
        args = payload.get("args") or {}
        source = next((s for s in self.metadata["sources"] if s["name"] == args.get("source", "default")), None)
        if source is None:
            raise Failure(400, "not-exists", f"source with name \"{args.get('source')}\" does not exist", "$.args")
        try:
            names, rows = query(self.source_url(source), args["sql"])
        except psycopg.Error as exc:
            raise Failure(400, "postgres-error", "query execution failed", "$",
                          {"error": {"message": str(exc).strip()}}) from exc
        if args.get("check_metadata_consistency", True):
            self.rebuild(self.metadata)
        if names is None:
            return 200, {"result_type": "CommandOk", "result": None}
        return 200, {"result_type": "TuplesOk",
                     "result": [names] + [[None if v is None else str(v) for v in row] for row in rows]}


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
