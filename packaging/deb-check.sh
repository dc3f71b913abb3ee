#!/usr/bin/env bash
# Builds the Debian package (cargo deb), installs it on this machine with dpkg, starts the
# installed binary from the installed paths as the `livechat` user (the unit's ExecStart;
# by hand where systemd is not running), checks /healthz, then removes and purges it.
#
#   bash packaging/deb-check.sh              # build, install, serve, purge
#   bash packaging/deb-check.sh --no-build   # the newest target/debian/livechat_*.deb
#
# Needs root, `cargo install cargo-deb`, adduser and curl. It changes this machine while it
# runs (a package, a system user, /etc/livechat, /var/lib/livechat) and undoes that at the
# end; CI skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '== %s\n' "$*"; }

step "the package's unit is packaging/livechat.service with the binary in /usr/bin"
diff <(sed -n '/^\[Unit\]/,$p' packaging/livechat.service | sed 's|/usr/local/bin/livechat|/usr/bin/livechat|') \
     <(sed -n '/^\[Unit\]/,$p' packaging/debian/livechat.service)

if [ "${1:-}" != --no-build ]; then
    step "cargo deb"
    cargo deb
fi
deb=$(ls -t target/debian/livechat_*.deb | head -n 1)
step "$deb: $(du -h "$deb" | cut -f1)"
dpkg-deb --field "$deb" Package Version Architecture Depends Installed-Size
dpkg-deb --contents "$deb" | awk '{print $1, $2, $6}'

had_user=no
getent passwd livechat >/dev/null && had_user=yes
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi
    if dpkg-query -W livechat >/dev/null 2>&1; then dpkg --purge livechat >/dev/null || true; fi
    if [ "$had_user" = no ] && getent passwd livechat >/dev/null; then
        deluser --system --quiet livechat 2>/dev/null || true
    fi
}
trap cleanup EXIT

step "dpkg -i"
dpkg -i "$deb"
step "installed"
id livechat
stat -c '%U:%G %a %n' /usr/bin/livechat /etc/livechat/livechat.toml /etc/livechat/bots \
    /etc/livechat/bots/support.toml /var/lib/livechat
unit=$(dpkg -L livechat | grep '/systemd/system/livechat.service$')
echo "unit: $unit"
echo "conffiles:"
dpkg-query -W -f='${Conffiles}\n' livechat | awk 'NF {print "  " $1}'
/usr/bin/livechat --version

stat -c '%U:%G %a %n' /etc/livechat/env
grep -c '^LIVECHAT_ADMIN_TOKEN=[0-9a-f]\{64\}$' /etc/livechat/env >/dev/null && echo "admin token generated"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The sample settings listen on 127.0.0.1:8080; the flag's variable wins over the file, so
# the check does not depend on that port being free.
step "runuser -u livechat -- $exec_start (LIVECHAT_LISTEN=127.0.0.1:$port)"
if [ -d /run/systemd/system ]; then
    echo "(systemd runs here, but the check starts ExecStart by hand so as to pick the port)"
fi
log=$(mktemp)
# The unit's EnvironmentFile, as systemd would read it.
runuser -u livechat -- env $(grep -v '^#' /etc/livechat/env) LIVECHAT_LISTEN="127.0.0.1:$port" \
    LIVECHAT_LOG=info $exec_start >"$log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
step "curl /healthz"
curl -sf "http://127.0.0.1:$port/healthz"
echo
step "curl -H 'Accept-Encoding: br' /widget.js"
curl -s -o /dev/null -H 'Accept-Encoding: br' \
    -w 'status %{http_code}, %{size_download} bytes, %header{content-encoding}, etag %header{etag}\n' \
    "http://127.0.0.1:$port/widget.js"
step "the server's files"
stat -c '%U:%G %a %n' /var/lib/livechat/livechat.db
head -n 3 "$log"
kill "$server"
wait "$server" || true
server=

step "dpkg -r: the binary goes, the settings and the database stay"
dpkg -r livechat >/dev/null
test ! -e /usr/bin/livechat && echo "/usr/bin/livechat removed"
test -f /etc/livechat/livechat.toml && echo "/etc/livechat/livechat.toml kept"
test -f /var/lib/livechat/livechat.db && echo "/var/lib/livechat/livechat.db kept"
step "dpkg --purge: nothing stays"
dpkg --purge livechat >/dev/null
test ! -e /etc/livechat && echo "/etc/livechat removed"
test ! -e /var/lib/livechat && echo "/var/lib/livechat removed"
getent passwd livechat >/dev/null && echo "user livechat kept (as Debian keeps system users)"
step "ok"
