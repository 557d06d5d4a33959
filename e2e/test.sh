#!/usr/bin/env bash
# Runs the end-to-end tests (e2e/tests) against the cluster KUBECONFIG names,
# and on failure prints what helps to see why: pods, events and the
# operator's log. Shared by `make e2e` (the local cluster) and the kind
# workflow (.github/workflows/e2e.yaml).
#
#   KUBECONFIG=... KUBEFTP_E2E_SPARE_LB_IP=... e2e/test.sh [cargo test args]
#
# Needs root (the FTP clients run in network namespaces behind NAT),
# helm, kubectl, curl and lftp on PATH.
set -uo pipefail
cd "$(dirname "$0")/.." || exit

: "${KUBECONFIG:?KUBECONFIG must name the cluster to test}"
: "${KUBEFTP_E2E_SPARE_LB_IP:?KUBEFTP_E2E_SPARE_LB_IP must name a free load-balancer address}"
export KUBECONFIG KUBEFTP_E2E_SPARE_LB_IP

cargo test --locked -p kubeftp-e2e "$@" -- --test-threads=8
status=$?
if ((status != 0)); then
  echo "=== e2e failed; the cluster as it is now ===" >&2
  kubectl get nodes,pods,services,pvc -A -o wide >&2
  kubectl get ftpservers -A >&2
  kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 60 >&2
  kubectl -n kubeftp-system logs deployment/kubeftp --tail=100 >&2
fi
exit "$status"
