#!/usr/bin/env bash
# `make run`: apikeyd and nginx with the module, on loopback, state under var/.
# Prints the admin token and a first few commands; Ctrl-C stops both.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
var=${APIKEY_VAR_DIR:-$repo/var}
# data/ is apikeyd's to create (0700, README "Permissions").
mkdir -p "$var"/{logs,tmp}
cd "$repo"

# A fresh admin token on first run, kept (0600) for the next ones.
token_file=$var/admin-token
if [ ! -s "$token_file" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$token_file")
fi
token=$(cat "$token_file")
token_hash=$(build/apikeyd hash-token < "$token_file")

group_line=""
if [ "$(id -u)" = 0 ]; then
    # nginx's workers run as nobody:nogroup (conf.example/nginx.conf) and must reach the
    # snapshot through every parent directory.
    group_line="snapshot_group: nogroup"
    if ! runuser -u nobody -- test -x "$var"; then
        echo "error: user nobody cannot reach $var (a parent directory is private)." >&2
        echo "Set APIKEY_VAR_DIR to a directory outside it, e.g. APIKEY_VAR_DIR=/tmp/apikey make run" >&2
        exit 1
    fi
fi

cat > "$var/apikeyd.yaml" <<YAML
listen: 127.0.0.1:8088
usage_listen: 127.0.0.1:8089
data_dir: $var/data
snapshot_path: $var/snapshot
$group_line
admin_tokens:
  - name: local-admin
    token_sha256: $token_hash
YAML

pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    # Ctrl-C reaches nginx too, which may remove its pid file while this reads it.
    local nginx_pid
    nginx_pid=$(cat "$var/logs/nginx.pid" 2>/dev/null) && kill -QUIT "$nginx_pid" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "stopped."
}
trap stop INT TERM EXIT

build/apikeyd --config "$var/apikeyd.yaml" 2>> "$var/logs/apikeyd.log" &
pids+=($!)
for _ in $(seq 100); do
    # /healthz needs no token: probing another path logged a failed admin authentication
    # (and counted one against 127.0.0.1) at every start.
    curl -s -o /dev/null "http://127.0.0.1:8088/healthz" && break
    kill -0 "${pids[0]}" 2>/dev/null || { tail -5 "$var/logs/apikeyd.log"; exit 1; }
    sleep 0.1
done

# conf.example/nginx.conf loads the module as ../build/..., relative to the prefix: right
# for var/ in the repository only. Elsewhere (APIKEY_VAR_DIR) nginx gets a copy of it that
# names the module by its absolute path.
nginx_conf=$repo/conf.example/nginx.conf
if [ "$(cd "$var" && pwd -P)" != "$(cd "$repo/var" 2>/dev/null && pwd -P)" ]; then
    sed "s|^load_module \.\./build/|load_module $repo/build/|" "$nginx_conf" > "$var/nginx.conf"
    nginx_conf=$var/nginx.conf
fi
/usr/sbin/nginx -p "$var/" -c "$nginx_conf" -t -q
/usr/sbin/nginx -p "$var/" -c "$nginx_conf" -g 'daemon off;' &
pids+=($!)

cat <<MSG
apikeyd admin API  http://127.0.0.1:8088   (log: $var/logs/apikeyd.log)
nginx + apikey     http://127.0.0.1:8080   (logs: $var/logs/)
admin token        $token

Try:
  T=$token
  WS=\$(curl -s -H "Authorization: Bearer \$T" -d '{"org":"acme-corp","slug":"sales","name":"Sales"}' \\
        http://127.0.0.1:8088/api/v1/workspaces | sed 's/.*"id":"\([^"]*\)".*/\1/')
  KEY=\$(curl -s -H "Authorization: Bearer \$T" -d '{"name":"demo","permission":"read_write"}' \\
        http://127.0.0.1:8088/api/v1/workspaces/\$WS/api-keys | sed 's/.*"key":"\([^"]*\)".*/\1/')
  curl -i -H "Authorization: Bearer \$KEY" http://127.0.0.1:8080/api/v1/acme-corp/sales/Customer

Ctrl-C stops both.
MSG
wait -n "${pids[@]}" || true
