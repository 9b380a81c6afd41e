#!/usr/bin/env bash
# Install the Debian packages the tests talk to: mail clients, a delivery
# agent and Dovecot (the reference server) for the POP3 interop tests,
# NFS-Ganesha and libnfs for the NFS lab,
# nftables and iproute2 for the bastion. Needs root; without root it says
# which tests will be skipped and exits 0.
set -euo pipefail

PKGS=(
    procmail fetchmail mpop getmail6 curl dovecot-core dovecot-pop3d
    nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils openvpn openssl
    iproute2 nftables procps util-linux libpam-modules passwd openssh-client
)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed \
        || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "install-test-deps: not root, so not installing: ${missing[*]}" >&2
    echo "install-test-deps: tests that need them will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -o DPkg::Lock::Timeout=300 -y -q)
echo "install-test-deps: installing ${missing[*]}" >&2
# Debian's maintainer scripts try to start the daemons they install; the
# tests start their own, on private addresses and ports.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
"${apt[@]}" update >/dev/null
"${apt[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
if ((created_policy)); then
    rm -f "$policy"
fi
