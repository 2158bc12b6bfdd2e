"""What real Hasura does, fact by fact, each with the upstream file it comes from.

The Hasura contract tests (tests/contracts/test_hasura.py) assert through
`expect`, so a failure says which fact it contradicts and where upstream
states it, whether the image under test is the official one (upstream mode)
or the double (local mode). Files are in hasura/graphql-engine at the tag
the template pins (`_hasura_version` in cookiecutter.json).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

TAG = json.loads((Path(__file__).resolve().parents[1] / "cookiecutter.json").read_text())["_hasura_version"]


@dataclass(frozen=True)
class Fact:
    says: str
    source: str

    def where(self):
        return f"hasura/graphql-engine@{TAG} {self.source}"


def expect(fact, holds, got):
    """Fail naming the fact and its upstream source unless `holds`."""
    if not holds:
        pytest.fail(f"contradicts: {fact.says}\n  upstream: {fact.where()}\n  got: {got!r}", pytrace=False)


HEALTHZ = Fact("/healthz answers 200 OK when the metadata is consistent; with inconsistent objects 200 "
               "'WARN: inconsistent objects in schema', and with ?strict=true 500 'ERROR: inconsistent objects in schema'",
               "server/src-lib/Hasura/Server/App.hs (healthzAction)")
GRAPHQL_STATUS = Fact("/v1/graphql answers HTTP 200 even when the body holds errors",
                      "server/src-lib/Hasura/GraphQL/Transport/HTTP.hs")
ADMIN_SECRET_ONLY = Fact("admin secret, no JWT, no unauthorized role: a request without the secret gets "
                         "access-denied '\"x-hasura-admin-secret\"/\"x-hasura-access-key\" required, but not found' "
                         "(header names quoted since 98ee4e3d2, before v2.43.0; Data/Text/Extended.hs (<<>))",
                         "server/src-lib/Hasura/Server/Auth.hs (getUserInfoWithExpTime_, AMAdminSecret)")
JWT_NO_HEADER = Fact("admin secret and JWT, no unauthorized role: a request with neither secret nor Authorization "
                     "gets invalid-headers \"Missing 'Authorization' or 'Cookie' header in JWT authentication mode\"",
                     "server/src-lib/Hasura/Server/Auth/JWT.hs (processJwt_, withoutAuthZ)")
UNAUTHORIZED_ROLE = Fact("with HASURA_GRAPHQL_UNAUTHORIZED_ROLE the anonymous request runs as that role, and a table "
                         "the role may not select is absent: validation-failed \"field 'x' not found in type: "
                         "'query_root'\"",
                         "server/src-lib/Hasura/Server/Auth/JWT.hs (withoutAuthZ); "
                         "server/lib/schema-parsers/src/Hasura/GraphQL/Parser/Internal/Parser.hs (selectionSet)")
UNKNOWN_FIELD = Fact("an unknown root field is validation-failed \"field 'x' not found in type: 'query_root'\"",
                     "server/lib/schema-parsers/src/Hasura/GraphQL/Parser/Internal/Parser.hs (selectionSet)")
ROLE_PERMISSIONS = Fact("a JWT role sees only the rows and columns of its select permission",
                        "server/src-lib/Hasura/Server/Auth/JWT.hs (processJwt_); the table's select_permissions")
METADATA_API_DENIED = Fact("the metadata API refuses a request without credentials with the auth mode's error "
                           "(JWT mode: 400 invalid-headers)",
                           "server/src-lib/Hasura/Server/Auth/JWT.hs (withoutAuthZ); server/src-lib/Hasura/App.hs")
CONSOLE_SETTINGS = Fact("the console API: GET /apis/migrate/settings -> {\"migration_mode\": \"true\"} by default; "
                        "PUT {name, value} -> 200 {\"message\": \"Successfuly set\"}; a body that is not JSON -> 500 "
                        "internal_error; other methods -> 405 {\"message\": \"Method not allowed\"}",
                        "cli/migrate/api/settings.go (SettingsAPI); cli/migrate/database/hasuradb/settings.go")
CONSOLE_MIGRATE = Fact("POST /apis/migrate without `datasource` -> 500 internal_error 'datasource key not found in "
                       "body' (checked first); with it, while migration mode is off -> 400 migration_mode_disabled",
                       "cli/migrate/api/migrate.go (MigrateAPI); cli/migrate/migrate.go (QueryWithVersion)")
CLI_STATE = Fact("config v3 keeps the CLI's settings and applied migrations in the catalog state (cli_state), "
                 "not in hdb_catalog.schema_migrations",
                 "cli/migrate/database/hasuradb/migration_state_catalog_state.go, settings.go "
                 "(SettingsStateStoreWithCatalogStateAPI); packaging/cli-migrations/v3/test/validation/"
                 "catalog_cli_state.json")
ENTRYPOINT_ORDER = Fact("the cli-migrations-v3 entrypoint applies metadata first, then `migrate apply "
                        "--all-databases` and `metadata reload`, through a temporary server on "
                        "HASURA_GRAPHQL_MIGRATIONS_SERVER_PORT (9691)",
                        "packaging/cli-migrations/v3/docker-entrypoint.sh")
ENTRYPOINT_TIMEOUT = Fact("the entrypoint waits HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT seconds for the temporary "
                          "server's port, then exits 1 naming the port",
                          "packaging/cli-migrations/v3/docker-entrypoint.sh (wait_for_port)")
MIGRATION_MODE_OFF = Fact("`migrate apply` refuses to run while migration mode is off (ErrNoMigrationMode), and the "
                          "entrypoint stops on that error",
                          "cli/migrate/migrate.go (Up); cli/commands/migrate_apply.go; "
                          "packaging/cli-migrations/v3/docker-entrypoint.sh (set -e)")
UNREADABLE_METADATA = Fact("metadata the CLI cannot build or the server cannot parse (a missing !include file, broken "
                           "YAML, an action missing from actions.graphql, a list where a mapping belongs) fails "
                           "`metadata apply` with 'error applying metadata', and the container stops",
                           "cli/internal/projectmetadata/handler.go (buildMetadataMap); cli/internal/metadataobject/"
                           "sources/yaml.go; cli/internal/metadataobject/actions/actions.go; "
                           "cli/commands/metadata_apply.go (errorApplyingMetadata)")
INCONSISTENT_METADATA = Fact("metadata naming a missing table never yields a healthy server: the CLI applies it "
                             "with allow_inconsistent_metadata and the server serves with strict /healthz 500, while "
                             "the packaging test expects the container not to come up; either way the project's "
                             "healthcheck fails",
                             "cli/commands/metadata_handlers.go (Apply: inconsistency is a warning); "
                             "packaging/cli-migrations/v3/test/test.sh (bad_metadata)")
BAD_DATABASE = Fact("with an unreachable database the temporary server never opens its port, so the entrypoint "
                    "exits 1 after HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT",
                    "packaging/cli-migrations/v3/docker-entrypoint.sh (wait_for_port)")

# --- API groups, CORS, introspection, API limits, the admin secret header ----------------
# Read from hasura/graphql-engine master at 5a67e3e6 (2026-05-19), the newest tree readable
# here; see .scratch/hasura-checklist.md for why, and check these against the pinned tag.

DISABLED_API = Fact("an API group left out of HASURA_GRAPHQL_ENABLED_APIS answers 404 "
                    "{\"error\": \"resource does not exist\", \"path\": \"$\", \"code\": \"not-found\"} before "
                    "the body is read; /healthz, /hasura/healthz and /v1/version belong to no group and always answer",
                    "server/src-lib/Hasura/Server/App.hs (httpApp, onlyWhenApiEnabled, healthzAction)")
ENABLED_APIS_VALUES = Fact("HASURA_GRAPHQL_ENABLED_APIS is a comma separated list of metadata, graphql, pgdump, "
                           "developer, config, metrics (any case; default metadata,graphql,pgdump,config); any other "
                           "word, or an empty value, stops the server: 'Fatal Error:- Environment variable "
                           "HASURA_GRAPHQL_ENABLED_APIS: Only expecting list of comma separated API types ...'",
                           "server/src-lib/Hasura/Server/Init/Env.hs (FromEnv (HashSet API), considerEnv); "
                           "server/src-lib/Hasura/Server/Init/Arg/Command/Serve.hs (enabledAPIsOption)")
TEMPORARY_SERVER_APIS = Fact("the entrypoint starts its temporary server with --enabled-apis=\"metadata\", and a flag "
                             "wins over its variable (which is then not read): metadata is applied at start even when "
                             "HASURA_GRAPHQL_ENABLED_APIS leaves `metadata` out",
                             "packaging/cli-migrations/v3/docker-entrypoint.sh; "
                             "server/src-lib/Hasura/Server/Init/Env.hs (withOptionDefault)")
CORS_ALLOWED = Fact("an allowed Origin (HASURA_GRAPHQL_CORS_DOMAIN, default \"*\") is echoed in "
                    "Access-Control-Allow-Origin with Access-Control-Allow-Credentials: true on the route's own "
                    "answer; an OPTIONS request from it is answered 204 by the middleware, for any path",
                    "server/src-lib/Hasura/Server/Middleware.hs (corsMiddleware, mkCorsHeaders, respondPreFlight)")
CORS_REFUSED = Fact("an Origin that is not allowed (or any Origin with HASURA_GRAPHQL_DISABLE_CORS=true) gets no "
                    "Access-Control-* header and the route's usual status; its preflight OPTIONS matches no route and "
                    "is answered 500 {\"error\": \"Internal Server Error\", \"path\": \"$\", \"code\": \"unexpected\"}",
                    "server/src-lib/Hasura/Server/Middleware.hs (handleCors); server/src-lib/Hasura/Server/App.hs "
                    "(mkSpockConfig, spockInternalErrorHandler); agrafix/Spock@40d028b Spock-core/src/Web/Spock/"
                    "Internal/Wire.hs (applyAction [])")
CORS_DOMAINS = Fact("HASURA_GRAPHQL_CORS_DOMAIN entries need a scheme (scheme://host[:port]); scheme://*.host "
                    "matches exactly one more leftmost label (not the bare host, not two labels); an entry without a "
                    "scheme stops the server with \"invalid domain: '<entry>'\"",
                    "server/src-lib/Hasura/Server/Cors.hs (readCorsDomains, parseOptWildcardDomain, originParser)")
INTROSPECTION_NOT_ENFORCED = Fact("the community edition accepts graphql_schema_introspection.disabled_for_roles "
                                  "(set_graphql_schema_introspection_options -> {\"message\": \"success\"}) and still "
                                  "answers those roles' introspection; enforcing it is a Cloud/Enterprise feature",
                                  "server/src-lib/Hasura/App.hs (instance MonadGQLExecutionCheck AppM: "
                                  "executeIntrospection); docs/docs/security/disable-graphql-introspection.mdx")
API_LIMITS_NOT_ENFORCED = Fact("the community edition accepts api_limits (set_api_limits -> {\"message\": "
                               "\"success\"}; a malformed one is parse-failed) and enforces none of them",
                               "server/src-lib/Hasura/App.hs (instance HasResourceLimits AppM); "
                               "server/src-lib/Hasura/RQL/Types/ApiLimit.hs; docs/docs/security/api-limits.mdx")
ADMIN_SECRET_HEADER = Fact("the admin secret is read from x-hasura-admin-secret or x-hasura-access-key, header name "
                           "in any case, value compared exactly; without it the request is authenticated by the other "
                           "mode (JWT here)",
                           "server/src-lib/Hasura/Server/Auth.hs (checkingSecretIfSent); "
                           "server/src-lib/Hasura/Authentication/Session.hs (SessionVariable is case-insensitive)")
