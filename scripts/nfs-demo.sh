#!/usr/bin/env bash
# nfs-demo.sh: the whole NFS path in one command, as root.
#
# Brings up the three-namespace lab (tests/lab/nfs-lab.sh) with no plain
# route from client to falcon. Runs `spoolgate bastion` with RPC policy in
# the bastion namespace and `spoolgate tunnel` in the client namespace.
# Creates a demo system user with a random password and logs it in with
# `spoolgate login`. Copies a file to falcon over NFS through the tunnel and
# back, and shows that a spoofed uid and an export not on the allow-list are
# rejected. Everything is torn down at the end, also on failure or Ctrl-C.
# docs/nfs-demo.md describes the steps and the output.
#
# Environment (all optional):
#   SPOOLGATE=.venv/bin/spoolgate   the spoolgate command to run
#   DEMO_STATE=<new temporary dir>  keys, configs and logs; removed at the end
#   DEMO_KEEP=0                     1: keep DEMO_STATE and the lab's logs
#   LAB_INSTALL=1                   0: fail on a missing package instead of apt-get
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_SCRIPT=$ROOT/tests/lab/nfs-lab.sh
SPOOLGATE=${SPOOLGATE:-$ROOT/.venv/bin/spoolgate}
KEEP=${DEMO_KEEP:-0}

export LAB_PREFIX=sgdemo
export LAB_NET1=10.214.1
export LAB_NET2=10.214.2
export LAB_FORWARD=0
NS_CLIENT=$LAB_PREFIX-client
NS_BASTION=$LAB_PREFIX-bastion
BASTION_IP=$LAB_NET1.1
FALCON_IP=$LAB_NET2.2
TUNNEL_NET=10.214.200
BASTION_TUN=$TUNNEL_NET.1
CLIENT_TUN=$TUNNEL_NET.2
LOGIN=$BASTION_TUN:7451
SPOOFED_UID=4242
FILE_BYTES=1048576
WAIT_S=30

BASTION_PID=""
TUNNEL_PID=""
DEMO_USER=""
PAM_FILE=""
STATE=""

step() { printf '\n==> %s\n' "$*"; }
say() { printf '    %s\n' "$*"; }
die() { printf '\nnfs-demo: FAILED: %s\n' "$*" >&2; exit 1; }

stop_pid() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    step "tearing down"
    stop_pid "$TUNNEL_PID"
    stop_pid "$BASTION_PID"
    LAB_KEEP_STATE=$KEEP "$LAB_SCRIPT" down >/dev/null 2>&1 || say "lab down failed"
    if [[ -n $DEMO_USER ]]; then userdel "$DEMO_USER" 2>/dev/null || true; fi
    if [[ -n $PAM_FILE ]]; then rm -f "$PAM_FILE"; fi
    if [[ -n $STATE && $KEEP != 1 ]]; then rm -rf "$STATE"; fi
    [[ $KEEP == 1 && -n $STATE ]] && say "kept $STATE"
    say "namespaces, nftables tables, demo user and files removed"
    if [[ $status -eq 0 ]]; then
        printf '\nnfs-demo: OK\n'
    elif [[ -n $STATE && -r $STATE/bastion.log ]]; then
        printf '\nlast lines of the bastion log:\n' >&2
        tail -n 20 "$STATE/bastion.log" >&2 || true
    fi
    exit "$status"
}

# Poll COMMAND... until it succeeds; fail after WAIT_S seconds.
wait_until() {
    local what=$1
    shift
    for _ in $(seq $((WAIT_S * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    die "timed out after ${WAIT_S} s waiting for $what"
}

in_client() { timeout --foreground 60 ip netns exec "$NS_CLIENT" "$@"; }
nfs_url() { echo "nfs://$FALCON_IP/export/$1?uid=$2&gid=$DEMO_GID"; }
status_json() { "$SPOOLGATE" bastion status --socket "$STATE/status.sock"; }
session_up() { status_json | grep -q "\"address\": \"$CLIENT_TUN\""; }
log_has() { grep -q -- "$1" "$STATE/bastion.log"; }

check_requirements() {
    [[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, nftables, useradd)"
    [[ -x $SPOOLGATE ]] || die "$SPOOLGATE not found; run make (or set SPOOLGATE)"
    [[ -e /dev/net/tun ]] || die "/dev/net/tun is missing"
    local program
    for program in ip nft useradd userdel chpasswd sha256sum; do
        command -v "$program" >/dev/null || die "$program not found"
    done
    if [[ -e /run/netns/$NS_BASTION ]]; then
        die "a lab named $LAB_PREFIX is already up; remove it with: LAB_PREFIX=$LAB_PREFIX $LAB_SCRIPT down"
    fi
}

bring_up_lab() {
    step "bringing up the lab: $NS_CLIENT ($LAB_NET1.2), $NS_BASTION, ${LAB_PREFIX}-falcon ($FALCON_IP, NFS-Ganesha)"
    "$LAB_SCRIPT" up >"$STATE/lab.out" 2>&1 || { cat "$STATE/lab.out" >&2; die "nfs-lab.sh up failed"; }
    say "LAB_FORWARD=0: the bastion does not route, so only the tunnel reaches falcon"
}

make_keys() {
    step "generating the bastion's and the client's keys (spoolgate keygen)"
    BASTION_FP=$("$SPOOLGATE" keygen bastion --dir "$STATE" | awk '{print $1}')
    CLIENT_FP=$("$SPOOLGATE" keygen demo-client --dir "$STATE" | awk '{print $1}')
    say "bastion     $BASTION_FP"
    say "demo-client $CLIENT_FP"
}

make_user() {
    step "creating the demo system user and its files on falcon's export"
    DEMO_USER=sgdemo$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
    DEMO_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    useradd --no-create-home --shell /usr/sbin/nologin "$DEMO_USER"
    printf '%s:%s\n' "$DEMO_USER" "$DEMO_PASSWORD" | chpasswd
    DEMO_UID=$(id -u "$DEMO_USER")
    DEMO_GID=$(id -g "$DEMO_USER")
    PAM_FILE=/etc/pam.d/spoolgate-$LAB_PREFIX
    printf 'auth required pam_unix.so\naccount required pam_unix.so\n' >"$PAM_FILE"
    local export=$STATE/lab/export
    install -d -o "$DEMO_UID" -g "$DEMO_GID" -m 700 "$export/home/$DEMO_USER"
    install -d -m 755 "$export/secret"
    echo "not for the demo user" >"$export/secret/plans.txt"
    say "user $DEMO_USER (uid $DEMO_UID, gid $DEMO_GID), random password, PAM service spoolgate-$LAB_PREFIX"
    say "allow-list: /export/home; /export/secret is not on it"
}

write_configs() {
    cat >"$STATE/bastion.toml" <<EOF
[bastion]
listen = "$BASTION_IP:7443"
key = "bastion.key"
cert = "bastion.crt"
status_socket = "$STATE/status.sock"

[tun]
name = "sgdemo0"
address = "$BASTION_TUN/24"

[nfs]
server = "$FALCON_IP"
mount_port = 20048

[[client]]
name = "demo-client"
cert = "demo-client.crt"
fingerprint = "$CLIENT_FP"
address = "$CLIENT_TUN"

[login]
listen = ":7451"
ttl_s = 600
methods = ["password"]
pam_service = "spoolgate-$LAB_PREFIX"
failure_delay_s = 1.0

[[policy.client]]
name = "demo-client"
exports = ["/export/home"]
users = ["$DEMO_USER"]
EOF
    cat >"$STATE/tunnel.toml" <<EOF
[tunnel]
bastion = "$BASTION_IP:7443"
bastion_fingerprint = "$BASTION_FP"
key = "demo-client.key"
cert = "demo-client.crt"
backoff_max_s = 2.0

[tun]
name = "sgdemotun0"
address = "$CLIENT_TUN"
routes = ["$FALCON_IP/32", "$BASTION_TUN/32"]
EOF
}

start_tunnel() {
    step "starting spoolgate bastion (RPC policy on) in $NS_BASTION"
    ip netns exec "$NS_BASTION" "$SPOOLGATE" bastion --config "$STATE/bastion.toml" \
        >"$STATE/bastion.log" 2>&1 &
    BASTION_PID=$!
    wait_until "the bastion's status socket" test -S "$STATE/status.sock"
    say "proxy on $BASTION_TUN:7450, login service on $LOGIN"
    step "starting spoolgate tunnel in $NS_CLIENT (tun address $CLIENT_TUN)"
    ip netns exec "$NS_CLIENT" "$SPOOLGATE" tunnel --config "$STATE/tunnel.toml" \
        >"$STATE/tunnel.log" 2>&1 &
    TUNNEL_PID=$!
    wait_until "the client's tunnel session" session_up
    say "tunnel up: $(in_client ip route get "$FALCON_IP" | head -n 1)"
}

log_in() {
    step "logging $DEMO_USER in with spoolgate login (PAM password)"
    local reply
    reply=$(printf '%s\n' "$DEMO_PASSWORD" | in_client "$SPOOLGATE" login \
        --server "$LOGIN" --user "$DEMO_USER" --password-stdin) || die "the bastion rejected the login of $DEMO_USER"
    say "$reply"
}

copy_file() {
    step "copying a file to falcon and back over NFSv3 through the tunnel (nfs-cp, uid $DEMO_UID)"
    head -c "$FILE_BYTES" /dev/urandom >"$STATE/hello.bin"
    in_client nfs-cp "$STATE/hello.bin" "$(nfs_url "home/$DEMO_USER/hello.bin" "$DEMO_UID")" >/dev/null \
        || die "writing through the tunnel failed"
    in_client nfs-cp "$(nfs_url "home/$DEMO_USER/hello.bin" "$DEMO_UID")" "$STATE/back.bin" >/dev/null \
        || die "reading through the tunnel failed"
    local sent stored back
    sent=$(sha256sum <"$STATE/hello.bin" | cut -c1-16)
    stored=$(sha256sum <"$STATE/lab/export/home/$DEMO_USER/hello.bin" | cut -c1-16)
    back=$(sha256sum <"$STATE/back.bin" | cut -c1-16)
    say "sent      $FILE_BYTES bytes, sha256 $sent..."
    say "on falcon owner $(stat -c %U "$STATE/lab/export/home/$DEMO_USER/hello.bin"), sha256 $stored..."
    say "read back sha256 $back..."
    [[ $sent == "$stored" && $sent == "$back" ]] || die "the copies differ"
    say "OK: byte-identical"
}

refusals() { grep -c -- "reason=$1:" "$STATE/bastion.log" || true; }
refusals_above() { [[ $(refusals "$1") -gt $2 ]]; }

# Run COMMAND... and expect it to fail, with REASON in the bastion's log.
expect_refused() {
    local reason=$1 what=$2
    shift 2
    local before
    before=$(refusals "$reason")
    if "$@" >/dev/null 2>&1; then die "$what succeeded, but the bastion should reject it"; fi
    wait_until "the bastion's log line reason=$reason" refusals_above "$reason" "$before"
    say "REFUSED as expected: $what"
    say "bastion log: $(grep -- "reason=$reason:" "$STATE/bastion.log" | tail -n 1 | sed 's/.*rpc proxy //')"
}

show_refusals() {
    step "reading the same file with a spoofed uid $SPOOFED_UID (no login bound it)"
    expect_refused uid_not_bound "read with uid $SPOOFED_UID" \
        in_client nfs-cp "$(nfs_url "home/$DEMO_USER/hello.bin" "$SPOOFED_UID")" "$STATE/spoofed.bin"
    step "listing /export/secret, an export not on the allow-list"
    expect_refused export "mount of /export/secret" \
        in_client nfs-ls "$(nfs_url secret "$DEMO_UID")"
}

show_status() {
    step "the bastion's status: login bindings and proxy counters"
    local summary
    read -r -d '' summary <<'PY' || true
import json, sys
rpc = json.loads(sys.argv[1])["rpc_policy"]
for b in rpc["bindings"]:
    print(f"    binding: user={b['user']} uid={b['uid']} gids={b['gids']} "
          f"client={b['client']} expires={b['expires']}")
p = rpc["proxy"]
print(f"    proxy: connections={p['connections']} forwarded={p['calls_forwarded']} "
      f"answered={p['calls_answered']}")
print("    refused: " + " ".join(f"{k}={v}" for k, v in rpc["refused"].items() if v))
PY
    python3 -c "$summary" "$(status_json)"
    step "logging $DEMO_USER out"
    say "$(in_client "$SPOOLGATE" logout --server "$LOGIN" --user "$DEMO_USER")"
}

main() {
    check_requirements
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    STATE=${DEMO_STATE:-$(mktemp -d /tmp/spoolgate-nfs-demo.XXXXXX)}
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    export LAB_STATE=$STATE/lab
    bring_up_lab
    make_keys
    make_user
    write_configs
    start_tunnel
    log_in
    copy_file
    show_refusals
    show_status
}

main "$@"
