# shellcheck shell=bash
# Makes a Postgres server reachable for the demo and the tests.
#
# ensure_database NAME: when DATABASE_URL is set it is used as is (NAME is ignored).
# Otherwise a local server is used (started, or installed with apt-get when absent and
# running as root), a role `sspm` (password `sspm`, CREATEDB) is created on it, and
# DATABASE_URL is exported for a database NAME owned by that role.

sspm_log() { printf '==> %s\n' "$*" >&2; }

_pg_admin_psql() {
  # Trust auth over TCP (this project's dev machines), else the postgres OS user.
  if psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  elif command -v runuser >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- psql -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  else
    sudo -u postgres psql -d postgres -v ON_ERROR_STOP=1 -Atq "$@"
  fi
}

_pg_server_up() {
  pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null
}

_pg_start_local() {
  if _pg_server_up; then return 0; fi
  if ! command -v pg_lsclusters >/dev/null 2>&1 && ! command -v pg_ctlcluster >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      sspm_log "Postgres is not installed and this is not root: install PostgreSQL or set DATABASE_URL"
      return 1
    fi
    sspm_log "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql postgresql-client >/dev/null
  fi
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    sspm_log "no Postgres cluster found under /etc/postgresql: set DATABASE_URL"
    return 1
  fi
  sspm_log "starting the local PostgreSQL $version cluster"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
    || pg_ctlcluster "$version" main start
  for _ in $(seq 1 30); do
    _pg_server_up && return 0
    sleep 1
  done
  sspm_log "PostgreSQL did not come up on 127.0.0.1:5432"
  return 1
}

ensure_database() {
  local name=$1
  if [ -n "${DATABASE_URL:-}" ]; then
    sspm_log "using the configured DATABASE_URL"
    return 0
  fi
  _pg_start_local
  _pg_admin_psql -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sspm') THEN
        CREATE ROLE sspm LOGIN PASSWORD 'sspm' CREATEDB CREATEROLE;
      END IF;
    END \$\$;" >/dev/null
  if [ "$(_pg_admin_psql -c "SELECT 1 FROM pg_database WHERE datname = '$name'")" != 1 ]; then
    _pg_admin_psql -c "CREATE DATABASE \"$name\" OWNER sspm" >/dev/null
  fi
  export DATABASE_URL="postgres://sspm:sspm@127.0.0.1:5432/$name"
  sspm_log "using local database $name"
}

# recreate_database NAME: a clean database (local server only).
recreate_database() {
  local name=$1
  _pg_start_local
  ensure_database "$name"
  _pg_admin_psql -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
  _pg_admin_psql -c "CREATE DATABASE \"$name\" OWNER sspm" >/dev/null
}
