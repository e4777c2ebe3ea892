#!/usr/bin/env bash
# Regenerate core/tests/fixtures/kernel/*.{nft,legacy}.saved: load every hand-written
# kube-proxy restore payload (<name>.restore) into a fresh network namespace with the real
# iptables-restore, then record what the kernel + iptables-save print back.
#
# Needs root, `ip netns`, iptables (nft backend), iptables-legacy (optional) and nfacct.
# Touches nothing outside the namespaces it creates (named psk-<pid>-fx-<n>), and removes them
# on every exit path.
set -euo pipefail
cd "$(dirname "$0")/../core/tests/fixtures/kernel"

if [[ $EUID -ne 0 ]]; then
  echo "kernel-fixtures.sh: needs root (network namespaces + iptables)" >&2
  exit 2
fi
command -v nfacct >/dev/null || { echo "kernel-fixtures.sh: needs nfacct (apt-get install nfacct)" >&2; exit 2; }

created=()
cleanup() {
  for ns in "${created[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

backends=(nft)
if command -v iptables-legacy-restore >/dev/null && ip netns add "psk-$$-probe" 2>/dev/null; then
  created+=("psk-$$-probe")
  if ip netns exec "psk-$$-probe" iptables-legacy -t nat -S >/dev/null 2>&1; then backends+=(legacy); fi
fi

n=0
for input in *.restore; do
  name=${input%.restore}
  case $name in ipv6-*) fam=ip6tables ;; *) fam=iptables ;; esac
  for backend in "${backends[@]}"; do
    n=$((n + 1))
    ns="psk-$$-fx-$n"
    ip netns add "$ns"
    created+=("$ns")
    # kube-proxy creates these nfacct objects over netlink before it writes rules that name them;
    # `-m nfacct` refuses to load (ENOENT) when the object does not exist.
    ip netns exec "$ns" nfacct add localhost_nps_accepted_pkts
    ip netns exec "$ns" nfacct add ct_state_invalid_dropped_pkts
    case $backend in
      nft) restore=$fam-nft-restore save=$fam-nft-save ;;
      legacy) restore=$fam-legacy-restore save=$fam-legacy-save ;;
    esac
    # The flags kube-proxy passes (pkg/util/iptables: restoreAll with NoFlushTables, RestoreCounters).
    ip netns exec "$ns" "$restore" --noflush --counters <"$input"
    ip netns exec "$ns" "$save" | grep -v '^#' >"$name.$backend.saved"
    ip netns del "$ns"
    echo "$name.$backend.saved: $(wc -l <"$name.$backend.saved") lines"
  done
done

# Cross-check builtin-jumps.restore against the way kube-proxy really installs those jumps:
# `iptables -N` then `iptables -I <builtin> 1 …` per jump, in kube-proxy's processing order
# (pkg/proxy/iptables/proxier.go iptablesJumpChains, then the KUBE-FIREWALL jumps).
n=$((n + 1))
ns="psk-$$-fx-$n"
ip netns add "$ns"
created+=("$ns")
ipt() { ip netns exec "$ns" iptables "$@"; }
for c in KUBE-EXTERNAL-SERVICES KUBE-NODEPORTS KUBE-SERVICES KUBE-FORWARD KUBE-PROXY-FIREWALL KUBE-FIREWALL; do ipt -t filter -N "$c"; done
for c in KUBE-SERVICES KUBE-POSTROUTING; do ipt -t nat -N "$c"; done
ipt -t filter -I INPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
ipt -t filter -I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
ipt -t filter -I INPUT 1 -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
ipt -t filter -I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
ipt -t filter -I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
ipt -t filter -I FORWARD 1 -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
ipt -t filter -I INPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
ipt -t filter -I OUTPUT 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
ipt -t filter -I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
ipt -t nat -I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
ipt -t nat -I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
ipt -t nat -I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
ipt -t filter -I INPUT 1 -j KUBE-FIREWALL
ipt -t filter -I OUTPUT 1 -j KUBE-FIREWALL
# Only rule lines are compared: chain declaration order differs between `-N` and a restore payload.
if ! diff <(ip netns exec "$ns" iptables-save | grep '^-A') <(grep '^-A' builtin-jumps.nft.saved); then
  echo "kernel-fixtures.sh: builtin-jumps.restore does not match the iptables -I sequence" >&2
  exit 1
fi
echo "builtin-jumps: iptables -I sequence matches the restore fixture"
