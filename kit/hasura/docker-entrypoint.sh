#!/bin/sh
# Entrypoint of the local stand-in for hasura/graphql-engine:<v2>.cli-migrations-v3.
# It follows packaging/cli-migrations/v3/docker-entrypoint.sh of hasura/graphql-engine
# at v2.51.0, step for step (written anew, not copied):
#   1. HGE_BINARY must be set, or it stops.
#   2. A temporary engine with only the metadata API serves on
#      HASURA_GRAPHQL_MIGRATIONS_SERVER_PORT (9691); it waits up to
#      HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT (30) seconds for the port, then exits 1.
#   3. Metadata first: `hasura-cli metadata apply` on HASURA_GRAPHQL_METADATA_DIR
#      (/hasura-metadata), if that directory exists.
#   4. Then migrations: `hasura-cli migrate apply --all-databases` and
#      `hasura-cli metadata reload` on HASURA_GRAPHQL_MIGRATIONS_DIR (/hasura-migrations),
#      if it exists; then seeds (HASURA_GRAPHQL_SEEDS_DIR, /hasura-seeds) the same way.
#   5. The temporary engine is stopped and the command (graphql-engine serve) replaces
#      this shell. Any failing step ends the container (the upstream script runs set -e).
set -eu

note() {
  printf '{"timestamp":"%s","level":"info","type":"startup","detail":{"kind":"%s","info":"%s"}}\n' \
    "$(date -u '+%Y-%m-%dT%H:%M:%S.000+0000')" "$1" "$2"
}

if [ -z "${HGE_BINARY:-}" ]; then
  note migrations-startup "validation failed: expected HGE_BINARY environment variable to be set"
  exit 1
fi

port="${HASURA_GRAPHQL_MIGRATIONS_SERVER_PORT:-9691}"
timeout="${HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT:-30}"
metadata_dir="${HASURA_GRAPHQL_METADATA_DIR:-/hasura-metadata}"
migrations_dir="${HASURA_GRAPHQL_MIGRATIONS_DIR:-/hasura-migrations}"
seeds_dir="${HASURA_GRAPHQL_SEEDS_DIR:-/hasura-seeds}"
project=/tmp/hasura-project

note migrations-startup "starting graphql engine temporarily on port ${port}"
"${HGE_BINARY}" serve --enabled-apis=metadata --server-port="${port}" &
temporary=$!

note migrations-startup "waiting ${timeout} for ${port} to be ready"
waited=0
until nc -z localhost "${port}" >/dev/null 2>&1; do
  if [ "${waited}" -ge "${timeout}" ]; then
    note migrations-startup "failed waiting for ${port}, try increasing HASURA_GRAPHQL_MIGRATIONS_SERVER_TIMEOUT (default: 30)"
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done
note migrations-startup "port ${port} is ready"

project_config() {
  printf 'version: 3\nendpoint: http://localhost:%s\n' "${port}" >"${project}/config.yaml"
}

if [ -d "${metadata_dir}" ]; then
  note migrations-apply "applying metadata from ${metadata_dir}"
  mkdir -p "${project}/metadata"
  cp -a "${metadata_dir}/." "${project}/metadata/"
  project_config
  echo "metadata_directory: metadata" >>"${project}/config.yaml"
  (cd "${project}" && hasura-cli metadata apply)
else
  note migrations-apply "directory ${metadata_dir} does not exist, skipping metadata"
fi

if [ -d "${migrations_dir}" ]; then
  note migrations-apply "applying migrations from ${migrations_dir}"
  mkdir -p "${project}/migrations"
  cp -a "${migrations_dir}/." "${project}/migrations/"
  project_config
  (cd "${project}" && hasura-cli migrate apply --all-databases)
  note migrations-apply "reloading metadata"
  (cd "${project}" && hasura-cli metadata reload)
else
  note migrations-apply "directory ${migrations_dir} does not exist, skipping migrations"
fi

if [ -d "${seeds_dir}" ]; then
  note migrations-apply "applying seeds from ${seeds_dir}"
  mkdir -p "${project}/seeds"
  cp -a "${seeds_dir}/." "${project}/seeds/"
  project_config
  (cd "${project}" && hasura-cli seed apply --database-name default)
  note migrations-apply "reloading metadata"
  (cd "${project}" && hasura-cli metadata reload)
else
  note migrations-apply "directory ${seeds_dir} does not exist, skipping seeds"
fi

note migrations-shutdown "killing temporary server"
kill "${temporary}"
wait "${temporary}" 2>/dev/null || true
note migrations-shutdown "graphql-engine will now start in normal mode"
exec "$@"
