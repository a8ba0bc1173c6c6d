#!/bin/sh
# runctl: start an SSH server in a pod whose image does not do it itself (RunPod's own images do).
# Sent base64-encoded in the pod's dockerArgs; reads the public key from $PUBLIC_KEY, as RunPod's images do.
set -u
if [ -n "${PUBLIC_KEY:-}" ]; then
    mkdir -p /root/.ssh
    chmod 700 /root/.ssh
    printf '%s\n' "$PUBLIC_KEY" >> /root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
fi
if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
    if command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq openssh-server python3 >/dev/null
    elif command -v apk >/dev/null 2>&1; then
        apk add --no-cache openssh-server python3 >/dev/null
    elif command -v dnf >/dev/null 2>&1; then
        dnf install -y -q openssh-server python3 >/dev/null
    elif command -v yum >/dev/null 2>&1; then
        yum install -y -q openssh-server python3 >/dev/null
    fi
fi
mkdir -p /run/sshd /var/run/sshd
ssh-keygen -A >/dev/null 2>&1
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
"$SSHD" -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no
# keep the container alive; jobs are started over SSH
exec sleep infinity
