#!/usr/bin/env bash
# Two livechat replicas on one PostgreSQL, behind nginx, and a benchmark through nginx:
#
#   cargo build --release --workspace
#   bench/replicas.sh chat [more chat options, e.g. --duration 40s]
#   bench/replicas.sh store [more store options]
#
# `chat` kills one replica (`kill -9`) halfway through the steady phase (--kill-replica);
# `store` writes as fast as both replicas answer.
# Everything runs on loopback in a temporary directory that is removed at the end: a
# PostgreSQL cluster from Debian's `postgresql` (as `nobody` when run as root, since initdb
# refuses root), the bench bundle, two `livechat serve --database-url`, and nginx with
# packaging/nginx.conf's locations and both replicas as its upstream. nginx names the replica
# that took each request in `X-Livechat-Upstream`, which is how the bench tells cross-replica
# deliveries from the others. VISITORS and AGENTS (chat: 1000 and 100) or WRITERS and AGENTS
# (store: 64 and 2) set the load. PG_STATEMENTS=1 prints the statements that took
# PostgreSQL's time (pg_stat_statements) after the run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LIVECHAT_BIN:-$root/target/release/livechat}
bench=${LIVECHAT_BENCH_BIN:-$root/target/release/livechat-bench}
scenario=${1:-chat}
shift || true
case "$scenario" in
chat)
    visitors=${VISITORS:-1000}
    agents=${AGENTS:-100}
    team_size=10
    max_chats=$((visitors + 1))
    ;;
store)
    writers=${WRITERS:-64}
    agents=${AGENTS:-2}
    team_size=$agents
    max_chats=$((writers + 1))
    ;;
*) echo "usage: $0 chat|store [livechat-bench options]" >&2; exit 2 ;;
esac
for b in "$bin" "$bench"; do
    [ -x "$b" ] || { echo "no $b: cargo build --release --workspace first" >&2; exit 1; }
done
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pgbin" ] || { echo "no PostgreSQL: apt-get install postgresql" >&2; exit 1; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { echo "no nginx: apt-get install nginx" >&2; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d "${TMPDIR:-/tmp}/livechat-replicas-XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL on a Unix socket only, durable (fsync and synchronous_commit as shipped).
as_pg=()
if [ "$(id -u)" = 0 ]; then
    as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
    mkdir "$work/pg" && chown nobody:nogroup "$work/pg"
else
    mkdir "$work/pg"
fi
"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg/data" -U livechat --auth=trust --encoding=UTF8 \
    --locale=C >"$work/initdb.log" 2>&1
"${as_pg[@]}" "$pgbin/postgres" -D "$work/pg/data" -k "$work/pg" -c listen_addresses= \
    -c max_connections=300 -c shared_buffers=256MB \
    ${PG_STATEMENTS:+-c shared_preload_libraries=pg_stat_statements} >"$work/postgres.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    "$pgbin/pg_isready" -q -h "$work/pg" -U livechat -d postgres && break
    sleep 0.1
done
"$pgbin/psql" -q -h "$work/pg" -U livechat -d postgres -c 'CREATE DATABASE livechat'
if [ -n "${PG_STATEMENTS:-}" ]; then
    "$pgbin/psql" -q -h "$work/pg" -U livechat -d livechat -c 'CREATE EXTENSION pg_stat_statements'
fi
url="postgres://livechat@localhost/livechat?host=$work/pg"
export LIVECHAT_DATABASE_URL=$url

# The bench bundle, and the agents' password set once in the shared database.
export LIVECHAT_BENCH_PASSWORD=${LIVECHAT_BENCH_PASSWORD:-bench-replicas-password}
"$bench" bundle "$work/bots" --agents "$agents" --team-size "$team_size" \
    --max-chats "$max_chats" >/dev/null
for a in $(seq 0 $((agents - 1))); do
    echo "$LIVECHAT_BENCH_PASSWORD" |
        "$bin" agent password "agent$a@bench.example" --bots-dir "$work/bots" \
            --data-dir "$work/a" >/dev/null
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Two replicas; the limits per address are raised because every simulated client is 127.0.0.1.
serve() {
    local name=$1 port=$2
    LIVECHAT_LOG=info LIVECHAT_SOCKETS_PER_ADDRESS=1000000 LIVECHAT_MAX_CONNECTIONS=1000000 \
    LIVECHAT_SESSIONS_PER_ADDRESS=1000000 LIVECHAT_MESSAGE_BURST=1000000 \
        "$bin" serve --listen "127.0.0.1:$port" --bots-dir "$work/bots" \
        --data-dir "$work/$name" >"$work/$name.out" 2>"$work/$name.log" &
    pids+=($!)
}
port_a=$(free_port)
port_b=$(free_port)
serve a "$port_a"
pid_a=${pids[-1]}
# Killed on purpose: no job report from the shell.
disown "$pid_a"
serve b "$port_b"
for port in "$port_a" "$port_b"; do
    for _ in $(seq 300); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null ||
        { echo "replica on $port did not start:" >&2; tail -n 20 "$work"/*.log >&2; exit 1; }
done

# nginx: the upstream, map and locations of packaging/nginx.conf, both replicas in it.
port_n=$(free_port)
mkdir -p "$work/nginx/tmp"
chmod -R 777 "$work/nginx"
locations=$(sed -n '/# BEGIN livechat/,/# END livechat/p' "$root/packaging/nginx.conf")
mapping=$(sed -n '/^map \$http_upgrade/,/^}/p' "$root/packaging/nginx.conf")
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    upstream livechat {
        server 127.0.0.1:$port_a;
        server 127.0.0.1:$port_b;
        keepalive 64;
    }
$mapping
    server {
        listen 127.0.0.1:$port_n;
        add_header X-Livechat-Upstream \$upstream_addr always;
$locations
    }
}
EOF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port_n/healthz" >/dev/null && break
    sleep 0.1
done

echo "replica a: pid $pid_a on 127.0.0.1:$port_a; replica b on 127.0.0.1:$port_b; nginx on 127.0.0.1:$port_n" >&2
status=0
case "$scenario" in
chat)
    "$bench" --url "http://127.0.0.1:$port_n" chat --visitors "$visitors" --agents "$agents" \
        --team-size "$team_size" --kill-replica "$pid_a" "$@" || status=$?
    ;;
store)
    "$bench" --url "http://127.0.0.1:$port_n" store --writers "$writers" --agents "$agents" \
        "$@" || status=$?
    ;;
esac
if [ -n "${PG_STATEMENTS:-}" ]; then
    "$pgbin/psql" -h "$work/pg" -U livechat -d livechat -c "SELECT calls,
        round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms,
        rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query
        FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15"
fi
if [ "$status" != 0 ]; then
    echo "--- replica b's log (last lines)" >&2
    tail -n 30 "$work/b.log" >&2
fi
exit "$status"
