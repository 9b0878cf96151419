#!/usr/bin/env bash
# Makes sure a PostgreSQL cluster runs on this machine (Debian, as root) and that role
# $1 (password $2) exists and may create databases. With $3, also creates that database
# (UTF8, C locale, as Synapse needs) owned by the role, unless it exists.
# Listens on 127.0.0.1 only (Debian's default listen_addresses is localhost).
set -euo pipefail
role=${1:?role} password=${2:?password} database=${3:-}

if ! command -v pg_ctlcluster >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
    pg_ctlcluster "$version" main start
fi
for _ in $(seq 50); do
    su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.2
done
psql_() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(psql_ "select 1 from pg_roles where rolname = '$role'")" != 1 ]; then
    psql_ "create role $role login createdb password '$password'" >/dev/null
fi
if [ -n "$database" ] && [ "$(psql_ "select 1 from pg_database where datname = '$database'")" != 1 ]; then
    su postgres -c "createdb --encoding=UTF8 --locale=C --template=template0 --owner=$role $database"
fi
