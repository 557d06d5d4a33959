#!/usr/bin/env bash
# Builds the images the local cluster runs as OCI archives, without a
# container engine or a registry (neither exists on our machines):
#
#   kubeftp/kubeftp-operator:VERSION  and  kubeftp/kubeftp-server:VERSION
#     from target/release (cargo build --release first), laid out as their
#     Dockerfiles in this directory lay them out;
#   registry.k8s.io/pause:PAUSE_VERSION
#     the sandbox image, from the pause binary `make tools` builds.
#
#   e2e/images/build.sh OUT_DIR
#
# umoci assembles each image; its index names the image
# (io.containerd.image.name) so `ctr images import` needs no flags.
# Needs root (umoci keeps file owners), umoci and python3.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:?usage: $0 OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# shellcheck source=SCRIPTDIR/../tools/VERSIONS
source "$root/e2e/tools/VERSIONS"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
tools="$("$root/e2e/tools/build.sh" --print)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The value of the last `INSTRUCTION` line of a Dockerfile (its final stage).
dockerfile_value() {
  sed -n "s/^$2 //p" "$1" | tail -n1
}

# A root like distroless/cc's: users root and nonroot (65532), hosts looked
# up in files then DNS, a sticky /tmp.
base_rootfs() {
  local rootfs="$1"
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  chown 65532:65532 "$rootfs/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
}

# Copies a binary to PATH in the root, with the shared libraries it loads.
install_binary() {
  local rootfs="$1" binary="$2" path="$3" lib
  install -D -m 0755 "$binary" "$rootfs$path"
  for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
}

# image NAME TAG USER ENTRYPOINT FILL_FUNCTION [ARGS...]: writes OUT_DIR/<basename>.tar
image() {
  local name="$1" tag="$2" user="$3" entrypoint="$4" fill="$5"
  shift 5
  local layout="$work/layout" bundle="$work/bundle"
  rm -rf "$layout" "$bundle"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
  "$fill" "$bundle/rootfs" "$@"
  umoci repack --image "$layout:$tag" "$bundle"
  umoci config --image "$layout:$tag" --os linux --architecture amd64 \
    --config.user "$user" --config.entrypoint "$entrypoint" \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin
  umoci gc --layout "$layout"
  python3 - "$layout/index.json" "$name:$tag" <<'PY'
import json, sys
path, ref = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for manifest in index["manifests"]:
    manifest.setdefault("annotations", {})["io.containerd.image.name"] = ref
json.dump(index, open(path, "w"))
PY
  tar -C "$layout" -cf "$out/$(basename "$name").tar" .
  echo "images: $name:$tag -> $out/$(basename "$name").tar" >&2
}

rust_rootfs() {
  local rootfs="$1" binary="$2" path="$3"
  base_rootfs "$rootfs"
  install_binary "$rootfs" "$binary" "$path"
}

pause_rootfs() {
  install -m 0755 "$tools/pause" "$1/pause"
}

for name in kubeftp-operator kubeftp-server; do
  dockerfile="$here/$name.Dockerfile"
  binary="$root/target/release/$name"
  [[ -x "$binary" ]] || { echo "images: $binary missing: cargo build --release first" >&2; exit 1; }
  # COPY --from=build /NAME /usr/local/bin/NAME: the second path is where it goes.
  path="$(dockerfile_value "$dockerfile" 'COPY --from=build' | awk '{print $2}')"
  user="$(dockerfile_value "$dockerfile" USER)"
  entrypoint="$(dockerfile_value "$dockerfile" ENTRYPOINT | python3 -c 'import json,sys; print(json.load(sys.stdin)[0])')"
  image "docker.io/kubeftp/$name" "$version" "$user" "$entrypoint" rust_rootfs "$binary" "$path"
done

[[ -x "$tools/pause" ]] || { echo "images: $tools/pause missing: run make tools" >&2; exit 1; }
# The user and entrypoint of the upstream pause image.
image registry.k8s.io/pause "$PAUSE_VERSION" 65535:65535 /pause pause_rootfs
