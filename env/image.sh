#!/usr/bin/env bash
# The operator image, built from the Dockerfile (`make image`).
#
#   env/image.sh                 build it unless built already; print its reference
#   env/image.sh rootfs          the same, then print a directory holding its root
#                                filesystem (rootfs/) and OCI config (config.json), for runc
#   env/image.sh push NAME:TAG   the same, then push it to a registry (REGISTRY/NAME:TAG)
#   env/image.sh save FILE       the same, then write it as a docker-archive tarball named
#                                chatops:<version> (for `kind load image-archive FILE`)
#
# With a Docker engine that answers: `docker build`. Without one (this project's machines):
# Debian's buildah (`bud --isolation chroot --network host`, vfs storage under
# $CHATOPS_ENV_CACHE/containers), FROM a Python base made of Debian packages
# (env/build.sh pythonbase), pip in the build given this machine's CA bundle and pip
# configuration. A build is keyed by a hash of everything it is made from (Dockerfile,
# .dockerignore, pyproject.toml, operator/, the base): when none changed,
# nothing is built. Tags: $IMAGE:<version> (the package's version, the chart's appVersion)
# and $IMAGE:build-<hash>. IMAGE defaults to chatops.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=versions.env
source "$here/versions.env"
cache=${CHATOPS_ENV_CACHE:-$HOME/.cache/chatops-env}
image=${IMAGE:-chatops}
keep=3  # builds (and root filesystems) kept per machine; older ones are removed

log() { printf '[image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

cd "$root"
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')

# What the build reads, as .dockerignore lets it through (sources, never bytecode).
inputs() {
  printf '%s\n' Dockerfile .dockerignore pyproject.toml
  find operator -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' ! -path '*.egg-info*' | LC_ALL=C sort
}
content_hash() {  # $1: what else the build depends on (the base image)
  { echo "$1"; inputs | while read -r f; do printf '%s %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"; done; } |
    sha256sum | cut -c1-16
}

docker_works() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

# -- buildah --------------------------------------------------------------------------
store=$cache/containers
bah() { buildah --root "$store/storage" --runroot "$store/run" --storage-driver vfs "$@"; }

# The local Python base, imported once per tarball into buildah's storage; its reference.
python_base() {
  "$here/build.sh" containers pythonbase >&2
  local tar="$cache/pythonbase-$PYTHON_BASE_VERSION/bin/python-base.tar" ref ctr
  ref="localhost/chatops-python-base:$PYTHON_BASE_VERSION-$(stat -c %Y "$tar")"
  if ! bah inspect --type image "$ref" >/dev/null 2>&1; then
    log "importing the Python base $tar"
    ctr=$(bah from scratch)
    bah add --quiet "$ctr" "$tar" / >&2
    bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --cmd python3 "$ctr" >&2
    bah commit --quiet --rm "$ctr" "$ref" >/dev/null
  fi
  echo "$ref"
}

# pip inside the build trusts what pip on this machine trusts: its CA bundle, mounted.
ca_bundle() {
  local ca
  ca=$(python3 -m pip config get global.cert 2>/dev/null || true)
  ca=${ca:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
  [ -f "$ca" ] && echo "$ca"
}

build_buildah() {  # $1: hash, $2: base
  local ca conf=() pipconf code=0
  pipconf=$(mktemp)
  if ca=$(ca_bundle); then
    printf '[global]\ncert = %s\n' "$ca" >"$pipconf"
    conf=(-v "$ca:$ca:ro" -v "$pipconf:/etc/pip.conf:ro")
  fi
  # the docker format keeps HEALTHCHECK (the OCI image format has no such field)
  bah bud --isolation chroot --network host --pull-never --quiet --format docker \
    --build-arg "PYTHON_IMAGE=$2" "${conf[@]}" \
    -t "$image:build-$1" -t "$image:$version" -f Dockerfile . >&2 || code=$?
  rm -f "$pipconf"
  return "$code"
}

prune_buildah() {  # $1: the base in use
  local old name
  old=$(bah images --format '{{.CreatedAtRaw}} {{.Name}}:{{.Tag}}' | grep -F "/$image:build-" |
    sort -r | tail -n +$((keep + 1)) | awk '{print $NF}')
  old+=" $(bah images --format '{{.Name}}:{{.Tag}}' | grep -F /chatops-python-base: | grep -vxF "$1")"
  for name in $old; do bah rmi "$name" >/dev/null 2>&1 || true; done
  bah rmi --prune >/dev/null 2>&1 || true
}

# -- the build ------------------------------------------------------------------------

build() {
  local hash ref start=$SECONDS
  if docker_works; then
    hash=$(content_hash "docker")
    ref="$image:build-$hash"
    if ! docker image inspect "$ref" >/dev/null 2>&1; then
      log "docker build $image:$version ($hash)"
      docker build -q -t "$ref" -t "$image:$version" . >&2
      log "built in $((SECONDS - start)) s"
    fi
  else
    local base
    base=$(python_base)
    hash=$(content_hash "$base")
    ref="localhost/$image:build-$hash"
    if bah inspect --type image "$ref" >/dev/null 2>&1; then
      bah tag "$ref" "$image:$version"
    else
      log "buildah bud $image:$version ($hash) FROM $base"
      build_buildah "$hash" "$base"
      log "built in $((SECONDS - start)) s"
      prune_buildah "$base"
    fi
  fi
  echo "$ref"
}

# The image config (User, Env, Entrypoint, Cmd, WorkingDir...) out of an inspection.
config() { python3 -c "import json, sys; print(json.dumps(json.load(sys.stdin)$1, indent=1))"; }

# The image's root filesystem and config, exported once per build.
rootfs() {  # $1: reference
  local hash=${1##*build-} dir ctr mnt
  dir="$cache/image/$hash"
  if [ ! -f "$dir/.done" ]; then
    log "exporting the root filesystem of $1 to $dir"
    rm -rf "$dir" && mkdir -p "$dir/rootfs"
    if docker_works; then
      ctr=$(docker create "$1")
      docker export "$ctr" | tar -x -C "$dir/rootfs"
      docker rm "$ctr" >/dev/null
      docker image inspect "$1" | config '[0]["Config"]' >"$dir/config.json"
    else
      ctr=$(bah from --pull-never --quiet "$1")
      mnt=$(bah mount "$ctr")
      cp -a "$mnt/." "$dir/rootfs/"
      bah rm "$ctr" >/dev/null
      bah inspect --type image "$1" | config '["OCIv1"]["config"]' >"$dir/config.json"
    fi
    touch "$dir/.done"
    # shellcheck disable=SC2012  # names are hashes
    ls -td "$cache/image"/*/ | tail -n +$((keep + 1)) | xargs -r rm -rf
  fi
  echo "$dir"
}

case ${1:-}:$# in
  :0 | rootfs:1 | push:2 | save:2) ;;
  *) echo "usage: env/image.sh [rootfs | push REGISTRY/NAME:TAG | save FILE]" >&2; exit 2 ;;
esac
mkdir -p "$cache"
exec 9>"$cache/image.lock"
flock 9  # one build at a time per machine: checkouts and test workers share the cache
ref=$(build)
case ${1:-} in
  "") echo "$ref" ;;
  rootfs) rootfs "$ref" ;;
  push)
    if docker_works; then docker tag "$ref" "$2" && docker push "$2" >&2
    else bah push --quiet "$ref" "docker://$2" >&2; fi
    echo "$2" ;;
  save)
    if docker_works; then docker save -o "$2" "$image:$version"
    else rm -f "$2" && bah push --quiet "$ref" "docker-archive:$2:$image:$version" >&2; fi
    echo "$2" ;;
esac
