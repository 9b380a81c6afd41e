#!/bin/bash
# A private Dovecot POP3 server on one mbox, for side-by-side tests and
# benchmarks of spoolgate.
#
#   DOVECOT_MBOX=/path/to/file.mbox DOVECOT_PORT=P DOVECOT_PORT_SSL=Q \
#       tests/interop/dovecot.sh run     # foreground; stop it with SIGTERM
#   ... dovecot.sh start | stop | status # the same as a daemon
#   ... dovecot.sh reset-index           # when stopped: drop Dovecot's index
#
# Everything lives under $DOVECOT_STATE: config, base_dir, log, index,
# self-signed certificate and passwd file. The system /etc/dovecot and a
# system Dovecot are not touched. It listens on 127.0.0.1 only. Needs root,
# because Dovecot switches its mail processes to $DOVECOT_MAIL_USER.
#
# Environment (defaults in brackets):
#   DOVECOT_STATE       state directory                  (required)
#   DOVECOT_MBOX        mbox served as INBOX; %u in it   (required to start)
#                       stands for the user name
#   DOVECOT_PORT        POP3 port, with STLS             (required to start)
#   DOVECOT_PORT_SSL    POP3S port (implicit TLS)        (required to start)
#   DOVECOT_USER        login name                       [test]
#   DOVECOT_PASS        password                         [testpass]
#   DOVECOT_PASSWD_FILE "user:{SCHEME}hash" lines         (instead of the
#                       two above; for several users or a hashed password)
#   DOVECOT_MAIL_USER   system user of the mail processes [mail]
#                       (Dovecot rejects uid 0; the mbox is chowned to this
#                       user unless that user can already write it)
set -euo pipefail

STATE=${DOVECOT_STATE:?set DOVECOT_STATE to a directory for config, index and log}
USERNAME=${DOVECOT_USER:-test}
PASSWORD=${DOVECOT_PASS:-testpass}
MAIL_USER=${DOVECOT_MAIL_USER:-mail}
CONF=$STATE/dovecot.conf
PIDFILE=$STATE/run/master.pid

die() {
    echo "dovecot.sh: $*" >&2
    exit 1
}

check_installed() {
    [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/pop3 ] && return
    die "Dovecot is not installed; run scripts/install-test-deps.sh as root" \
        "(Debian packages dovecot-core and dovecot-pop3d)"
}

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

write_certificate() {
    [ -f "$STATE/cert.pem" ] && return
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
        -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$STATE/key.pem" -out "$STATE/cert.pem" 2>/dev/null
    chmod 600 "$STATE/key.pem"
}

write_passwd() {
    local uid=$1 gid=$2 line
    # user:password:uid:gid:gecos:home:shell:extra fields
    if [ -n "${DOVECOT_PASSWD_FILE:-}" ]; then
        while IFS= read -r line; do
            [ -n "$line" ] && printf '%s:%s:%s::%s::\n' "$line" "$uid" "$gid" "$STATE/home"
        done <"$DOVECOT_PASSWD_FILE" >"$STATE/passwd"
    else
        printf '%s:{PLAIN}%s:%s:%s::%s::\n' \
            "$USERNAME" "$PASSWORD" "$uid" "$gid" "$STATE/home" >"$STATE/passwd"
    fi
    # The auth process runs as the internal user "dovecot".
    chgrp dovecot "$STATE/passwd"
    chmod 640 "$STATE/passwd"
}

write_config() {
    local mbox=$1 uid gid
    uid=$(id -u "$MAIL_USER")
    gid=$(id -g "$MAIL_USER")
    mkdir -p "$STATE/mail" "$STATE/index" "$STATE/home"
    chown "$uid:$gid" "$STATE/mail" "$STATE/index" "$STATE/home"
    write_certificate
    write_passwd "$uid" "$gid"
    cat >"$CONF" <<EOF
# Written by tests/interop/dovecot.sh for a private test instance.
base_dir = $STATE/run
state_dir = $STATE/lib
instance_name = spoolgate-peer-$DOVECOT_PORT
protocols = pop3
listen = 127.0.0.1
log_path = $STATE/dovecot.log
info_log_path = $STATE/dovecot.log
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login
ssl = yes
ssl_cert = <$STATE/cert.pem
ssl_key = <$STATE/key.pem
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $STATE/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $STATE/passwd
}
mail_location = mbox:$STATE/mail/%u:INBOX=$mbox:INDEX=$STATE/index/%u
# fcntl only, so Dovecot makes no dotlock files beside the mbox, whose
# directory the mail user may not be able to write.
mbox_read_locks = fcntl
mbox_write_locks = fcntl
pop3_uidl_format = %08Xu%08Xv
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DOVECOT_PORT
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $DOVECOT_PORT_SSL
    ssl = yes
  }
}
EOF
}

prepare() {
    [ -n "${DOVECOT_MBOX:-}" ] || die "set DOVECOT_MBOX=/path/to/mbox"
    [ -n "${DOVECOT_PORT:-}" ] || die "set DOVECOT_PORT to a free port"
    [ -n "${DOVECOT_PORT_SSL:-}" ] || die "set DOVECOT_PORT_SSL to a free port"
    check_installed
    mbox=$(readlink -f "$(dirname "$DOVECOT_MBOX")")/$(basename "$DOVECOT_MBOX")
    if running; then die "already running (pid $(cat "$PIDFILE"))"; fi
    mkdir -p "$STATE"
    id "$MAIL_USER" >/dev/null 2>&1 || die "system user $MAIL_USER not found"
    # Dovecot writes its X-UID and Status headers into each mbox and
    # rewrites it on DELE, so the mail user must be able to write it.
    if [[ $mbox == *%u* ]]; then
        [ -d "$(dirname "$mbox")" ] || die "spool directory not found: $(dirname "$mbox")"
    else
        [ -f "$mbox" ] || die "mbox not found: $mbox"
        runuser -u "$MAIL_USER" -- test -w "$mbox" ||
            chown "$MAIL_USER:$(id -gn "$MAIL_USER")" "$mbox"
    fi
    runuser -u "$MAIL_USER" -- test -x "$(dirname "$mbox")" ||
        die "$MAIL_USER cannot enter $(dirname "$mbox"); chmod 755 it and its parents"
    write_config "$mbox"
}

cmd=${1:-status}
case "$cmd" in
run)
    prepare
    exec /usr/sbin/dovecot -F -c "$CONF" </dev/null 2>>"$STATE/dovecot.log"
    ;;
start)
    prepare
    # stderr goes to the log: the daemon keeps fd 2 open, so a caller
    # reading our stderr through a pipe would otherwise never see EOF.
    /usr/sbin/dovecot -c "$CONF" </dev/null >/dev/null 2>>"$STATE/dovecot.log" ||
        { tail -20 "$STATE/dovecot.log" >&2; die "dovecot did not start"; }
    for _ in $(seq 50); do running && break; sleep 0.1; done
    running || { tail -20 "$STATE/dovecot.log" >&2; die "dovecot did not start"; }
    echo "dovecot: pop3://127.0.0.1:$DOVECOT_PORT (STLS)," \
        "pop3s://127.0.0.1:$DOVECOT_PORT_SSL, user $USERNAME, state $STATE"
    ;;
stop)
    if running; then
        pid=$(cat "$PIDFILE")
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "dovecot stopped"
    else
        echo "dovecot not running"
    fi
    ;;
status)
    if running; then
        echo "running (pid $(cat "$PIDFILE")), config $CONF"
    else
        echo "not running"
        exit 3
    fi
    ;;
reset-index)
    running && die "stop it first"
    rm -rf "$STATE/index" "$STATE/mail"
    echo "index removed"
    ;;
*)
    die "usage: dovecot.sh run|start|stop|status|reset-index"
    ;;
esac
