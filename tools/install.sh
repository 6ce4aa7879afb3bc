#!/usr/bin/env bash
# Installs everything the agent and its tests need on Debian 12 (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends keepalived iproute2 tcpdump procps >/dev/null
python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python3 -m pip install -q -e '.[test]'
echo "install: done"
