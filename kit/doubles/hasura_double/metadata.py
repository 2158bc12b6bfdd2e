"""Hasura metadata: built from a CLI project directory, parsed and checked by the server.

Two halves, as upstream splits them:

* `build_project_metadata` is what `hasura-cli metadata apply` does before it
  sends anything: read every metadata object file of a config v3 project,
  resolve `!include`, and fail on anything it cannot read.
* `parse_metadata` and `inconsistencies` are what the server does with
  `replace_metadata`: reject a document of the wrong shape (parse-failed) and
  list the objects that do not match the database (inconsistent objects).

Sources (hasura/graphql-engine at v2.51.0):
  cli/internal/projectmetadata/objects.go        the objects and files read, in order
  cli/internal/projectmetadata/handler.go        buildMetadataMap: a missing object file is
                                                 skipped, any other error stops the apply
  cli/internal/metadataobject/metadataobject.go  ReadMetadataFile / ErrMetadataFileNotFound
  cli/internal/metadataobject/sources/sources.go databases.yaml; tables/functions may be
                                                 `!include`d, relative to metadata/databases
  cli/internal/metadataobject/sources/yaml.go    `!include` resolution (tag or "!include f"
                                                 string; nested paths relative to the includer)
  cli/internal/metadataobject/actions/actions.go actions.yaml entries must exist in
                                                 actions.graphql
"""

from pathlib import Path

import yaml
from graphql import GraphQLSyntaxError, parse

INCLUDE = "!include"


class ProjectError(Exception):
    """The CLI could not build metadata from the project (the apply stops)."""


class ParseFailed(Exception):
    """The server rejected the metadata document (400 parse-failed)."""

    def __init__(self, path, message):
        super().__init__(message)
        self.path = path


class _Include(str):
    """A scalar tagged `!include` (upstream resolves the tag and the string form alike)."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor(INCLUDE, lambda loader, node: _Include(loader.construct_scalar(node)))


def _read_yaml(path):
    try:
        return yaml.load(Path(path).read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ProjectError(f"error parsing metadata \nfile: {path}\nerror: {exc}") from exc


def _resolve(value, base):
    """sources/yaml.go resolveTags: an `!include` (tag, or a string of exactly two words
    whose first is `!include`) is replaced by the file's content, read relative to
    `base`; includes inside it resolve relative to that file's directory."""
    target = None
    if isinstance(value, _Include):
        target = value.strip().strip('"')
    elif isinstance(value, str) and INCLUDE in value:
        parts = value.split(" ")
        if len(parts) == 2:
            target = parts[1].strip('"')
    if target is not None:
        path = Path(base) / target
        if not path.is_file():
            raise ProjectError(f"error parsing metadata \nobject: sources\nfile: databases.yaml\n"
                               f"error: open {path}: no such file or directory")
        return _resolve(_read_yaml(path), path.parent)
    if isinstance(value, list):
        return [_resolve(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, base) for k, v in value.items()}
    return value


# projectmetadata/objects.go: the objects a config v3 project with metadata v3 builds,
# as (file, key in the metadata document). actions.yaml is special (see _actions).
SIMPLE_OBJECTS = [
    ("remote_schemas.yaml", "remote_schemas"),
    ("query_collections.yaml", "query_collections"),
    ("allow_list.yaml", "allowlist"),
    ("cron_triggers.yaml", "cron_triggers"),
    ("network.yaml", "network"),
    ("rest_endpoints.yaml", "rest_endpoints"),
    ("inherited_roles.yaml", "inherited_roles"),
    ("opentelemetry.yaml", "opentelemetry"),
    ("backend_configs.yaml", "backend_configs"),
    ("api_limits.yaml", "api_limits"),
    ("graphql_schema_introspection.yaml", "graphql_schema_introspection"),
    ("metrics_config.yaml", "metrics_config"),
]


def _actions(directory):
    """actions/actions.go Build: actions.graphql is the SDL; every action and custom type
    listed in actions.yaml must be defined there."""
    yaml_file, sdl_file = directory / "actions.yaml", directory / "actions.graphql"
    if not yaml_file.is_file() and not sdl_file.is_file():
        return {}
    sdl = sdl_file.read_text() if sdl_file.is_file() else ""
    defined = set()
    if sdl.strip():
        try:
            document = parse(sdl)
        except GraphQLSyntaxError as exc:
            raise ProjectError(f"error parsing metadata \nobject: actions\nfile: actions.graphql\n"
                               f"error: error in converting sdl to metadata: {exc.message}") from exc
        for definition in document.definitions:
            name = getattr(definition, "name", None)
            if name is not None:
                defined.add(name.value)
            for field in getattr(definition, "fields", None) or []:
                if getattr(definition, "name", None) and definition.name.value in ("Query", "Mutation"):
                    defined.add(field.name.value)
    content = (_read_yaml(yaml_file) if yaml_file.is_file() else None) or {}
    if not isinstance(content, dict):
        raise ProjectError("error parsing metadata \nobject: actions\nfile: actions.yaml\nerror: not a mapping")
    built = {}
    for action in content.get("actions") or []:
        if action.get("name") not in defined:
            raise ProjectError(f"error parsing metadata \nobject: actions\nfile: actions.yaml\n"
                               f"error: action {action.get('name')} is not present in actions.graphql")
    types = content.get("custom_types") or {}
    for kind in ("enums", "input_objects", "objects", "scalars"):
        for custom in types.get(kind) or []:
            if custom.get("name") not in defined:
                raise ProjectError(f"error parsing metadata \nobject: actions\nfile: actions.yaml\n"
                                   f"error: custom type {custom.get('name')} is not present in actions.graphql")
    if content.get("actions"):
        built["actions"] = content["actions"]
    if any(types.get(kind) for kind in ("enums", "input_objects", "objects", "scalars")):
        built["custom_types"] = types
    return built


def build_project_metadata(directory):
    """The metadata document `hasura-cli metadata apply` sends for a project's metadata directory."""
    directory = Path(directory)
    metadata = {}
    version_file = directory / "version.yaml"
    if version_file.is_file():
        metadata["version"] = (_read_yaml(version_file) or {}).get("version")
    databases = directory / "databases" / "databases.yaml"
    if databases.is_file():
        metadata["sources"] = _resolve(_read_yaml(databases) or [], databases.parent)
    metadata.update(_actions(directory))
    for filename, key in SIMPLE_OBJECTS:
        path = directory / filename
        if path.is_file():  # handler.go: ErrMetadataFileNotFound means "assume empty"
            metadata[key] = _read_yaml(path)
    return metadata


# --- the server's side ---------------------------------------------------------------
# server/src-lib/Hasura/RQL/Types/Metadata.hs and friends parse the document with aeson:
# a value of the wrong JSON type is a parse-failed error naming its path.

LIST_KEYS = {"sources", "remote_schemas", "query_collections", "allowlist", "cron_triggers", "actions",
             "rest_endpoints", "inherited_roles"}
MAP_KEYS = {"network", "opentelemetry", "backend_configs", "api_limits", "graphql_schema_introspection",
            "metrics_config", "custom_types"}


def _expect(condition, path, message):
    if not condition:
        raise ParseFailed(path, message)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


# server/src-lib/Hasura/RQL/Types/ApiLimit.hs (FromJSON ApiLimit, Limit, RateLimitConfig,
# UniqueParamConfig, MaxDepth/MaxNodes/MaxBatchSize: Int, MaxTime: Seconds). Keys it does not
# know are ignored, as aeson's `.:?` ignores them.
API_LIMIT_KINDS = {"rate_limit": None, "depth_limit": _is_int, "node_limit": _is_int, "time_limit": _is_number,
                   "batch_limit": _is_int}


def _rate_limit_config(value, where):
    _expect(isinstance(value, dict), where, "expected Object")
    _expect("max_reqs_per_min" in value, where, 'key "max_reqs_per_min" not found')
    _expect(_is_int(value["max_reqs_per_min"]), f"{where}.max_reqs_per_min", "expected Int")
    params = value.get("unique_params")
    if params is None:
        return
    message = "Not a valid value. Should be either: 'IP' or a list of Hasura session variables"
    if isinstance(params, str):
        _expect(params.lower() == "ip", f"{where}.unique_params", message)
        return
    _expect(isinstance(params, list), f"{where}.unique_params", message)
    for var in params:
        # Hasura/Authentication/Session.hs isSessionVariable: the x-hasura- prefix, any case
        _expect(isinstance(var, str) and var.lower().startswith("x-hasura-") and var != "x-hasura-role",
                f"{where}.unique_params", message)


def _api_limits(limits, where):
    """The shape of `api_limits` the server accepts; the community edition then stores it
    and enforces none of it (server/src-lib/Hasura/App.hs, instance HasResourceLimits AppM)."""
    for kind, valid in API_LIMIT_KINDS.items():
        limit = limits.get(kind)
        if limit is None:
            continue
        at = f"{where}.{kind}"
        _expect(isinstance(limit, dict), at, "expected Object")
        _expect("global" in limit, at, 'key "global" not found')
        per_role = limit.get("per_role") or {}
        _expect(isinstance(per_role, dict), f"{at}.per_role", "expected Object")
        for name, value in [("global", limit["global"])] + [(f"per_role.{r}", v) for r, v in per_role.items()]:
            if valid is None:
                _rate_limit_config(value, f"{at}.{name}")
            else:
                _expect(valid(value), f"{at}.{name}", "expected Number" if kind == "time_limit" else "expected Int")
    if "disabled" in limits and limits["disabled"] is not None:
        _expect(isinstance(limits["disabled"], bool), f"{where}.disabled", "expected Bool")


def _introspection_options(options, where):
    """server/src-lib/Hasura/RQL/Types/GraphqlSchemaIntrospection.hs: a record with one field,
    `disabled_for_roles` (required), a list of role names. The community edition stores it and
    does not enforce it (server/src-lib/Hasura/App.hs, executeIntrospection)."""
    _expect("disabled_for_roles" in options, where, 'key "disabled_for_roles" not found')
    roles = options["disabled_for_roles"]
    _expect(isinstance(roles, list) and all(isinstance(r, str) for r in roles), f"{where}.disabled_for_roles",
            "expected Array of role names")


def parse_metadata(document, base="$.args.metadata"):
    """Check the shape the server insists on; return the document with defaults filled in."""
    _expect(isinstance(document, dict), base, "expected Object, but encountered " + type(document).__name__)
    version = document.get("version", 3)
    _expect(version in (1, 2, 3), f"{base}.version", f"unexpected metadata version: {version}")
    for key in LIST_KEYS:
        if document.get(key) is not None:
            _expect(isinstance(document[key], list), f"{base}.{key}", "expected Array, but encountered Object")
    for key in MAP_KEYS:
        if document.get(key) is not None:
            _expect(isinstance(document[key], dict), f"{base}.{key}", "expected Object, but encountered Array")
    if document.get("api_limits") is not None:
        _api_limits(document["api_limits"], f"{base}.api_limits")
    if document.get("graphql_schema_introspection") is not None:
        _introspection_options(document["graphql_schema_introspection"], f"{base}.graphql_schema_introspection")
    sources = []
    for i, source in enumerate(document.get("sources") or []):
        where = f"{base}.sources[{i}]"
        _expect(isinstance(source, dict), where, "expected Object")
        for key in ("name", "kind", "configuration"):
            _expect(key in source, where, f"key \"{key}\" not found")
        tables = source.get("tables") or []
        _expect(isinstance(tables, list), f"{where}.tables", "expected Array")
        parsed_tables = []
        for j, entry in enumerate(tables):
            at = f"{where}.tables[{j}]"
            _expect(isinstance(entry, dict) and "table" in entry, at, "key \"table\" not found")
            table = entry["table"]
            if isinstance(table, str):
                table = {"schema": "public", "name": table}
            _expect(isinstance(table, dict) and isinstance(table.get("name"), str), f"{at}.table",
                    "expected a table name")
            table = {"name": table["name"], "schema": table.get("schema", "public")}
            for k, perm in enumerate(entry.get("select_permissions") or []):
                _expect(isinstance(perm, dict) and "role" in perm and "permission" in perm,
                        f"{at}.select_permissions[{k}]", "key \"role\" or \"permission\" not found")
                columns = perm["permission"].get("columns")
                _expect(columns == "*" or isinstance(columns, list), f"{at}.select_permissions[{k}].permission.columns",
                        "expected Array or \"*\"")
            parsed_tables.append(dict(entry, table=table))
        sources.append(dict(source, tables=parsed_tables))
    return dict(document, version=version, sources=sources)


def inconsistencies(document, table_columns):
    """The inconsistent objects of a parsed document. `table_columns(source, schema, name)`
    returns the table's column names, or None when the table does not exist.

    Server behaviour (server/src-lib/Hasura/RQL/DDL/Schema/Cache.hs): the schema cache is
    built object by object; an object that fails is recorded as inconsistent and left
    out, and the rest is served."""
    found = []
    for source in document.get("sources", []):
        for entry in source.get("tables", []):
            table = entry["table"]
            columns = table_columns(source, table["schema"], table["name"])
            if columns is None:
                found.append({"definition": table, "name": f"table {table['name']} in source {source['name']}",
                              "reason": f"Inconsistent object: no such table/view exists in source: \"{table['name']}\"",
                              "type": "table"})
                continue
            for rel in (entry.get("object_relationships") or []):
                using = (rel.get("using") or {}).get("foreign_key_constraint_on")
                if isinstance(using, str) and using not in columns:
                    found.append({"definition": rel, "name": f"object_relation {rel.get('name')} in table "
                                  f"{table['name']} in source {source['name']}",
                                  "reason": f"Inconsistent object: in table \"{table['name']}\": in relationship "
                                            f"\"{rel.get('name')}\": column \"{using}\" does not exist",
                                  "type": "object_relation"})
            for perm in entry.get("select_permissions") or []:
                wanted = perm["permission"].get("columns")
                wanted = [] if wanted == "*" else wanted
                filtered = list((perm["permission"].get("filter") or {}).keys())
                missing = [c for c in list(wanted) + filtered if not c.startswith("_") and c not in columns]
                if missing:
                    found.append({"definition": perm, "name": f"permission {table['name']}.{perm['role']}.select "
                                  f"in source {source['name']}",
                                  "reason": f"Inconsistent object: in table \"{table['name']}\": in permission for "
                                            f"role \"{perm['role']}\": column \"{missing[0]}\" does not exist",
                                  "type": "select_permission"})
    return found
