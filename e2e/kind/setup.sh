#!/usr/bin/env bash
# The kind path of the e2e tests, for users' CI (and anyone with Docker):
# a kind cluster, MetalLB handing out addresses on kind's Docker network,
# and the kubeftp images built from their Dockerfiles and loaded into kind.
# Then e2e/test.sh runs the same tests as `make e2e` does locally:
#
#   e2e/kind/setup.sh                          # prints the settings below
#   export KUBECONFIG=... KUBEFTP_E2E_SPARE_LB_IP=...
#   sudo -E e2e/test.sh                        # network namespaces need root
#
# Needs docker, kind, kubectl and helm. .github/workflows/e2e.yaml runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."

METALLB_VERSION="${METALLB_VERSION:-v0.15.2}"
cluster=kubeftp-e2e
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"

kind create cluster --config e2e/kind/cluster.yaml --wait 3m

# MetalLB in layer-2 mode: it answers ARP for its addresses on kind's
# network, which the host reaches directly.
kubectl apply -f "https://raw.githubusercontent.com/metallb/metallb/$METALLB_VERSION/config/manifests/metallb-native.yaml"
kubectl -n metallb-system rollout status deployment/controller --timeout=3m
kubectl -n metallb-system rollout status daemonset/speaker --timeout=3m
subnet="$(docker network inspect kind -f '{{range .IPAM.Config}}{{println .Subnet}}{{end}}' | grep -v : | head -n1)"
net="${subnet%.*.*}" # 172.18.0.0/16 -> 172.18
pool="$net.255.200-$net.255.250"
# The webhook that checks pools may take a moment after the controller.
for attempt in $(seq 30); do
  if kubectl apply -f - <<YAML; then break; fi
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: e2e
  namespace: metallb-system
spec:
  addresses: ["$pool"]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: e2e
  namespace: metallb-system
YAML
  ((attempt < 30)) || exit 1
  sleep 5
done

for image in kubeftp-operator kubeftp-server; do
  docker build -f "e2e/images/$image.Dockerfile" -t "kubeftp/$image:$version" .
  kind load docker-image --name "$cluster" "kubeftp/$image:$version"
done

# The tests move a Service to the pool's last address; MetalLB hands
# out the lowest free ones first.
kubeconfig="${KUBECONFIG:-$HOME/.kube/config}"
cat <<TEXT
kind cluster $cluster ready, MetalLB pool $pool. Run the tests with:
  export KUBECONFIG=$kubeconfig
  export KUBEFTP_E2E_SPARE_LB_IP=$net.255.250
  sudo -E e2e/test.sh
TEXT
if [[ -n "${GITHUB_ENV:-}" ]]; then
  echo "KUBECONFIG=$kubeconfig" >>"$GITHUB_ENV"
  echo "KUBEFTP_E2E_SPARE_LB_IP=$net.255.250" >>"$GITHUB_ENV"
fi
