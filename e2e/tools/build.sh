#!/usr/bin/env bash
# Builds the pinned control-plane binaries (see VERSIONS) into a cache
# directory outside the checkout, keyed by version, skipping binaries that
# are already there. Prints the binary directory on stdout when done (with
# --latest and --oldest, theirs, one per line).
#
#   e2e/tools/build.sh                   build what is missing
#   e2e/tools/build.sh --print           only print the binary directory
#   e2e/tools/build.sh --latest          also build the kube-apiserver,
#                                        kube-controller-manager and kubectl
#                                        of the newest Kubernetes
#                                        (KUBERNETES_LATEST_VERSION) into a
#                                        directory of their own beside links
#                                        to the pinned etcd and helm; prints
#                                        that directory
#   e2e/tools/build.sh --oldest          the same for the oldest supported
#                                        Kubernetes (KUBERNETES_OLDEST_VERSION)
#   e2e/tools/build.sh --latest --oldest both; prints both directories
#   e2e/tools/build.sh --latest --print  only print that directory
#
# Environment: KUBEFTP_TOOLS_DIR overrides the (pinned) binary directory,
# not those of --latest and --oldest, which stay in the cache; GOCACHE and
# GOMODCACHE default to directories under the kubeftp cache, which survive
# an interrupted build and are removed once every binary is built.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=SCRIPTDIR/VERSIONS
source "$here/VERSIONS"

cache_root="${XDG_CACHE_HOME:-${HOME:-}/.cache}/kubeftp"
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}"
bin="${KUBEFTP_TOOLS_DIR:-$cache_root/tools/$key/bin}"

# Extra Kubernetes versions asked for: latest, oldest (kubernetes-NAME/go.mod).
extras=() print=""
for arg in "$@"; do
  case "$arg" in
    --latest | --oldest) extras+=("${arg#--}") ;;
    --print) print=yes ;;
    *) echo "tools: unknown argument $arg" >&2; exit 2 ;;
  esac
done

# The version of an extra set, and the directory its binaries go to.
extra_version() {
  case "$1" in
    latest) echo "$KUBERNETES_LATEST_VERSION" ;;
    oldest) echo "$KUBERNETES_OLDEST_VERSION" ;;
  esac
}
extra_bin() {
  local version
  version="$(extra_version "$1")"
  if [[ "$version" == "$KUBERNETES_VERSION" ]]; then
    echo "$pinned_dir" # the pinned set is that version's
  else
    echo "$cache_root/tools/k8s-${version}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}/bin"
  fi
}
pinned_dir="$bin"

if [[ -n "$print" ]]; then
  if ((${#extras[@]})); then
    for extra in "${extras[@]}"; do extra_bin "$extra"; done
  else
    echo "$bin"
  fi
  exit 0
fi

own_gocache=$([[ -n "${GOCACHE:-}" ]] || echo yes)
own_gomodcache=$([[ -n "${GOMODCACHE:-}" ]] || echo yes)
export GOCACHE="${GOCACHE:-$cache_root/go/build}"
export GOMODCACHE="${GOMODCACHE:-$cache_root/go/mod}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

log() { echo "tools: $*" >&2; }

# Names from $@ whose binary is not in $bin yet.
missing() {
  local name
  for name in "$@"; do [[ -x "$bin/$name" ]] || echo "$name"; done
}

# go_build MODULE_DIR LDFLAGS PACKAGE... builds into a staging directory and
# moves the results into $bin, so an interrupted build leaves no half binary.
go_build() {
  local dir="$1" ldflags="$2"
  shift 2
  local stage
  stage="$(mktemp -d "$bin/.stage.XXXXXX")"
  (cd "$dir" && nice -n 10 go build -trimpath -ldflags "-s -w $ldflags" -o "$stage/" "$@")
  mv -f "$stage"/* "$bin/"
  rmdir "$stage"
}

# The official Go tarball's default location, for shells that lack it in PATH.
command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || {
  log "go not found: building the control-plane tools needs Go >= 1.24"
  exit 1
}

mkdir -p "$bin"
# One build at a time per cache directory; under the lock, any staging
# directory is a leftover of an interrupted build.
exec 9>"$bin/.lock"
flock 9
rm -rf "$bin"/.stage.*

start=$SECONDS

# The -ldflags that give Kubernetes $1's binaries their version: kubectl
# reads client-go's copy of it, the rest component-base's.
k8s_version_flags() {
  local version="$1" minor pkg flags=""
  minor="${version#v1.}"
  minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1"
    flags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

k8s_names=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
mapfile -t todo < <(missing "${k8s_names[@]}")
if ((${#todo[@]})); then
  log "building Kubernetes $KUBERNETES_VERSION: ${todo[*]} (a cold build takes a while)"
  go_build "$here" "$(k8s_version_flags "$KUBERNETES_VERSION")" "${todo[@]/#/k8s.io/kubernetes/cmd/}"
fi

if [[ -n "$(missing etcd)" ]]; then
  log "building etcd $ETCD_VERSION"
  # etcd's version string is a constant; the commit is unknown to a module build.
  go_build "$here/etcd" "-X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD_VERSION" \
    go.etcd.io/etcd/server/v3
  mv -f "$bin/server" "$bin/etcd" # go names the binary after the path without /v3
fi

if [[ -n "$(missing helm)" ]]; then
  log "building helm $HELM_VERSION"
  go_build "$here/helm" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    helm.sh/helm/v3/cmd/helm
fi

if [[ -n "$(missing actionlint)" ]]; then
  log "building actionlint $ACTIONLINT_VERSION"
  grep -q "github.com/rhysd/actionlint $ACTIONLINT_VERSION" "$here/actionlint/go.mod" || {
    log "e2e/tools/actionlint/go.mod does not require actionlint $ACTIONLINT_VERSION (VERSIONS)"
    exit 1
  }
  go_build "$here/actionlint" "-X main.version=$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint
fi

if [[ -n "$(missing pause)" ]]; then
  log "building pause $PAUSE_VERSION"
  # The sandbox image's program, from the pinned Kubernetes sources: a small
  # static C program (build/pause/linux/pause.c).
  k8s_dir="$(cd "$here" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
  tag="$(sed -n 's/^TAG ?= *//p' "$k8s_dir/build/pause/Makefile")"
  if [[ "$tag" != "$PAUSE_VERSION" ]]; then
    log "PAUSE_VERSION=$PAUSE_VERSION in VERSIONS, but Kubernetes $KUBERNETES_VERSION ships pause $tag"
    exit 1
  fi
  command -v gcc >/dev/null || { log "gcc not found: building pause needs a C compiler"; exit 1; }
  stage="$(mktemp -d "$bin/.stage.XXXXXX")"
  gcc -Os -static -Wall -DVERSION="$PAUSE_VERSION" -o "$stage/pause" "$k8s_dir/build/pause/linux/pause.c"
  mv -f "$stage/pause" "$bin/pause"
  rmdir "$stage"
fi

pinned_bin="$(cd "$bin" && pwd)"
# etcd and helm are the pinned ones; kube-apiserver, kube-controller-manager
# and kubectl are the extra version's (a kubectl within the skew Kubernetes
# supports: one minor from the apiserver).
extra_bins=()
for extra in "${extras[@]}"; do
  version="$(extra_version "$extra")"
  bin="$(extra_bin "$extra")"
  if [[ "$bin" == "$pinned_dir" ]]; then
    extra_bins+=("$pinned_bin")
    continue
  fi
  grep -qE "k8s\.io/kubernetes $version( |\$)" "$here/kubernetes-$extra/go.mod" || {
    log "e2e/tools/kubernetes-$extra/go.mod does not require k8s.io/kubernetes $version (VERSIONS)"
    exit 1
  }
  mkdir -p "$bin"
  exec 8>"$bin/.lock"
  flock 8
  rm -rf "$bin"/.stage.*
  # A link left by an earlier build.sh, which linked the pinned kubectl.
  [[ ! -L "$bin/kubectl" ]] || rm -f "$bin/kubectl"
  for name in etcd helm; do ln -sfn "$pinned_bin/$name" "$bin/$name"; done
  mapfile -t todo < <(missing kube-apiserver kube-controller-manager kubectl)
  if ((${#todo[@]})); then
    log "building Kubernetes $version: ${todo[*]}"
    go_build "$here/kubernetes-$extra" "$(k8s_version_flags "$version")" \
      "${todo[@]/#/k8s.io/kubernetes/cmd/}"
  fi
  exec 8>&-
  extra_bins+=("$bin")
done

# Every binary is in place. The Go caches are only for building them (5.1 GB
# for the pinned set, 7.7 GB for the extra ones), so ours go; caches given
# from outside stay.
[[ -z "$own_gocache" || ! -d "$GOCACHE" ]] || go clean -cache
[[ -z "$own_gomodcache" || ! -d "$GOMODCACHE" ]] || go clean -modcache

if ((${#extra_bins[@]})); then
  log "binaries ready in ${extra_bins[*]} ($((SECONDS - start)) s)"
  printf '%s\n' "${extra_bins[@]}"
else
  log "binaries ready in $bin ($((SECONDS - start)) s)"
  echo "$bin"
fi
