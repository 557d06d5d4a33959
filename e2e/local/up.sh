#!/usr/bin/env bash
# `make up`: the local cluster (kubeftp-cluster), the operator installed
# with the Helm chart, and examples/minimal.yaml applied; prints the FTP
# URL and a curl command that works from this machine. Expects the tools
# (`make tools`) and images (`make images`) to exist; the Makefile builds
# them first. `make down` removes everything.
set -euo pipefail
cd "$(dirname "$0")/../.."

tools="$(e2e/tools/build.sh --print)"
cargo build -q --locked -p kubeftp-cluster
target/debug/kubeftp-cluster up --images target/images >/dev/null
export KUBECONFIG=/var/lib/kubeftp-cluster/kubeconfig PATH="$tools:$PATH"

helm upgrade --install kubeftp charts/kubeftp \
  --namespace kubeftp-system --create-namespace --wait --timeout 3m >/dev/null
kubectl apply -f examples/minimal.yaml >/dev/null
kubectl wait ftpserver/files --for=condition=Ready --timeout=180s >/dev/null
url="$(kubectl get ftpserver files -o jsonpath='{.status.endpoints[0].url}')"

cat <<TEXT
kubeftp is up: the operator (Helm release kubeftp in kubeftp-system) and
FtpServer "files" from examples/minimal.yaml, behind load balancer $url

  curl -u alice:change-me $url                 # list
  curl -u alice:change-me -T README.md $url    # upload

  export KUBECONFIG=$KUBECONFIG
  export PATH=$tools:\$PATH
  kubectl get ftpservers

make down removes the cluster and everything in it.
TEXT
