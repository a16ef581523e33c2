#!/usr/bin/env bash
# Installs etcd 3.4 from Debian's packages for `raftwal-bench --peer etcd`, when it is missing.
# The benchmark runs this itself and says so; it is never needed by the README's two commands.
set -euo pipefail
if command -v etcd >/dev/null 2>&1; then
    exit 0
fi
echo "raftwal-bench: etcd is not installed; installing Debian's etcd-server package" >&2
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
# The package enables a system service; the benchmark runs its own cluster on other ports.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true; fi
etcd --version | head -1 >&2
