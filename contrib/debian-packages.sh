#!/usr/bin/env bash
# Installs, on Debian as root, what synsup's demo and tests need and the machine lacks:
# redis-server, PostgreSQL, systemd-analyze, Prometheus (the metrics e2e test), HAProxy and nginx (the
# `synsup routes` tests run `haproxy -c` and `nginx -t` on the generated files), and what pip needs to build psycopg2
# (pg_config, a C compiler, Python headers) and to make a virtualenv; etcd (the multi-host store tests
# start their own etcd on loopback ports; the package's own service is left as Debian sets it up).
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v prometheus >/dev/null || need+=(prometheus)
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
command -v etcd >/dev/null || need+=(etcd-server)
command -v pg_config >/dev/null || need+=(libpq-dev)
command -v cc >/dev/null || need+=(gcc libc6-dev)
python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
fi
echo "installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
