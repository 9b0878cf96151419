#!/usr/bin/env bash
# Brings up the demo: PostgreSQL, Redis and Synapse (main + two event persisters, a generic
# worker, a federation sender, a pusher and a background worker) supervised by synsup.
# Fresh Debian, as root. Safe to run again: it reuses what exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
run=${SYNSUP_DEMO_DIR:-$here/run}
mkdir -p "$run"

echo "== packages"
bash "$repo/contrib/debian-packages.sh"
# Debian starts a redis-server of its own where it can; the demo runs Redis under synsup.
if pgrep -x redis-server >/dev/null && ! [ -S "$run/state/synsup.sock" ]; then
    service redis-server stop >/dev/null 2>&1 || true
fi

echo "== PostgreSQL: role and database synapse"
bash "$repo/contrib/postgres.sh" synapse synapse synapse

echo "== virtualenv with synsup and Synapse ($run/venv)"
[ -x "$run/venv/bin/python" ] || python3 -m venv "$run/venv"
# every time (quick when nothing changed): a venv from an older checkout gets today's synsup
"$run/venv/bin/pip" install -q --disable-pip-version-check -e "$repo" "matrix-synapse[postgres,redis]"
py="$run/venv/bin/python"
bash "$repo/contrib/bytecode.sh" "$py"
synsup="$run/venv/bin/synsup"

echo "== config ($run/homeserver.yaml, $run/workers/)"
"$py" "$here/deployment.py" "$run" --python "$py"

state="$run/state"
args=(-c "$run/homeserver.yaml" -a "$run/workers" --python "$py" --state-dir "$state")

echo "== HAProxy in front, on 127.0.0.1:8008 ($run/haproxy.cfg, routes from the deployment)"
"$synsup" routes --format haproxy -c "$run/homeserver.yaml" -a "$run/workers" --python "$py" \
    --listen 127.0.0.1:8008 --admin-socket "$run/haproxy.sock" > "$run/haproxy.cfg.new"
haproxy -c -q -f "$run/haproxy.cfg.new"
mv "$run/haproxy.cfg.new" "$run/haproxy.cfg"
if [ -s "$run/haproxy.pid" ] && kill -0 "$(cat "$run/haproxy.pid")" 2>/dev/null; then
    haproxy -D -f "$run/haproxy.cfg" -p "$run/haproxy.pid" -sf "$(cat "$run/haproxy.pid")"   # a graceful reload
else
    haproxy -D -f "$run/haproxy.cfg" -p "$run/haproxy.pid"
fi

echo "== synsup start"
# --proxy: synsup drains a process's HAProxy server before every restart it makes, and sets it to
# maint the moment a process dies, so clients of port 8008 see no failed request for a restart
"$synsup" start "${args[@]}" --metrics 127.0.0.1:9400 --proxy "haproxy:$run/haproxy.sock"
"$synsup" status --state-dir "$state"

echo "== demo user"
if out=$("$run/venv/bin/register_new_matrix_user" -c "$run/homeserver.yaml" -u demo -p demo --no-admin \
        http://127.0.0.1:8008 2>&1); then
    echo "registered @demo:localhost"
elif grep -q "already taken" <<<"$out"; then
    echo "@demo:localhost exists already"
else
    echo "$out" >&2
    exit 1
fi

cat <<EOT

The demo runs. Log in with any Matrix client (for example Element) at homeserver
http://127.0.0.1:8008 (HAProxy: each endpoint goes to the process that serves it),
user "demo", password "demo". From the shell:

  curl -s -XPOST http://127.0.0.1:8008/_matrix/client/v3/login \\
    -d '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"demo"},"password":"demo"}'

Prometheus: synsup's metrics are at http://127.0.0.1:9400/metrics, and every Synapse
process's metrics listener is listed at http://127.0.0.1:9400/targets. In prometheus.yml:

  scrape_configs:
    - job_name: synsup
      static_configs: [{targets: ["127.0.0.1:9400"]}]
    - job_name: synapse
      http_sd_configs: [{url: "http://127.0.0.1:9400/targets"}]

For file_sd_configs instead, write the same targets to a file:
  $synsup targets --format file_sd -c $run/homeserver.yaml -a $run/workers > synapse-targets.json

Watch and drive it:
  $synsup status --state-dir $state
  $synsup top --state-dir $state
  $synsup logs -f --state-dir $state generic1
  $synsup reload --state-dir $state        # after editing $run/homeserver.yaml or $run/workers/*.yaml
  $synsup routes -c $run/homeserver.yaml -a $run/workers --diff $run/haproxy.cfg   # routes changed since?
  $synsup restart --state-dir $state generic1   # drained first: status shows PROXY drain, then ready
Stop it:
  $synsup stop --state-dir $state
  kill \$(cat $run/haproxy.pid)   # HAProxy
EOT
