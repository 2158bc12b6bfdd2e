#!/bin/bash
# Initialise and start PostgreSQL the way the official image does:
# POSTGRES_USER (default postgres), POSTGRES_PASSWORD, POSTGRES_DB (default
# POSTGRES_USER), their *_FILE forms, POSTGRES_HOST_AUTH_METHOD, and scripts
# in /docker-entrypoint-initdb.d on first start only (executable *.sh run,
# others sourced), and, like docker-library/postgres's 18 entrypoint
# (18/trixie/docker-entrypoint.sh lines 140-167 and 244-257, commit
# 6edb0a8c), a refusal to initialise PGDATA=/var/lib/postgresql/$PG_MAJOR/docker
# while an older layout's data (a PG_VERSION file) is in the volume, or while
# something is mounted at the pre-18 path /var/lib/postgresql/data.
set -euo pipefail

file_env() {
  local var="$1" file_var="${1}_FILE" default="${2:-}"
  if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
    echo "error: both $var and $file_var are set (but are exclusive)" >&2
    exit 1
  fi
  local value="$default"
  if [[ -n "${!var:-}" ]]; then value="${!var}"; elif [[ -n "${!file_var:-}" ]]; then value="$(<"${!file_var}")"; fi
  export "$var=$value"
  unset "$file_var"
}

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [[ "${1:-}" != "postgres" ]]; then
  exec "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

# The pre-18 layouts' data, seen only when PGDATA is the 18+ default and empty.
old_databases=()
if [[ ! -s "$PGDATA/PG_VERSION" && "$PGDATA" == "/var/lib/postgresql/${PG_MAJOR}/docker" ]]; then
  for d in /var/lib/postgresql /var/lib/postgresql/data /var/lib/postgresql/*/docker; do
    [[ -s "$d/PG_VERSION" ]] && old_databases+=("$d")
  done
  if ((${#old_databases[@]} == 0 && PG_MAJOR >= 18)) && mountpoint -q /var/lib/postgresql/data; then
    old_databases+=('/var/lib/postgresql/data (unused mount/volume)')
  fi
fi
if ((${#old_databases[@]})); then
  cat >&2 <<MSG
Error: in 18+, these Docker images are configured to store database data in a
       format which is compatible with "pg_ctlcluster" (specifically, using
       major-version-specific directory names).
       Counter to that, there appears to be PostgreSQL data in:
         ${old_databases[*]}
       This is usually the result of upgrading the Docker image without
       upgrading the underlying database using "pg_upgrade" (which requires both
       versions).
MSG
  exit 1
fi

mkdir -p "$PGDATA"
chown -R postgres:postgres "$(dirname "$PGDATA")"
chmod 700 "$PGDATA"

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  if [[ -z "${POSTGRES_PASSWORD}" && "$auth" != "trust" ]]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
MSG
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD}" >"$pwfile"
  chown postgres "$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags
  as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
  as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
  if [[ "$POSTGRES_DB" != "postgres" ]]; then
    as_postgres psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres -q \
      -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        if [[ -x "$f" ]]; then
          echo "running $f"
          "$f"
        else
          echo "sourcing $f"
          # shellcheck source=/dev/null # init scripts are supplied at run time
          . "$f"
        fi
        ;;
      *.sql) echo "running $f"; as_postgres psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" ;;
      *) ;;
    esac
  done
  as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" \
  -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "${@:2}"
