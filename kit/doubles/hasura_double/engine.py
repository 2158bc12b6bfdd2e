"""The engine of the `graphql-engine serve` double: sources, the GraphQL schema per role over
real PostgreSQL, and the metadata and query APIs. The HTTP layer that calls it is server.py.

Each behaviour names the upstream file it follows (hasura/graphql-engine at SOURCE_TAG,
see __init__.py).
"""

import json
import re
import threading

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

from hasura_double.auth import Auth
from hasura_double.catalog import Catalog, query
from hasura_double.config import Cors, Failure, fatal
from hasura_double.metadata import ParseFailed, inconsistencies, parse_metadata

EMPTY_METADATA = {"version": 3, "sources": []}
# server/src-lib/Hasura/Server/API/Metadata/Instances.hs: metadata commands that replace one object
METADATA_SETTERS = {"set_api_limits": "api_limits", "remove_api_limits": "api_limits",
                    "set_graphql_schema_introspection_options": "graphql_schema_introspection"}


# --- GraphQL types -------------------------------------------------------------------

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
