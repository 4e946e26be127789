#!/usr/bin/env bash
# Installs, from Debian's packages, what the one-node cluster (hack/cluster, make cluster-up) needs from the
# operating system: containerd and runc (the container runtime), the CNI plugins (bridge, host-local, loopback,
# portmap), iptables, ipset and conntrack (kube-proxy and kube-router), buildah (images from local parts) and
# iproute2. Does nothing when all of them are there. PostgreSQL comes from hack/os-packages.sh.
set -euo pipefail

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v ipset >/dev/null || need+=(ipset)
command -v conntrack >/dev/null || need+=(conntrack)
command -v buildah >/dev/null || need+=(buildah)
command -v ip >/dev/null || need+=(iproute2)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || need+=(ca-certificates)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "[cluster-packages] installing from Debian's packages: ${need[*]}" >&2
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi
