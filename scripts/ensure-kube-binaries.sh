#!/usr/bin/env bash
# Make sure a real kube-apiserver, kube-controller-manager (v1.20.2) and etcd exist for the
# integration tests, building the Kubernetes binaries once from Debian's `kubernetes` source package.
#
# Idempotent: when the cached binaries and etcd already exist it only prints the cache dir.
# The last line of output is always the cache dir; the binaries are in "$cache_dir/bin/".
#
# Needs: Debian bookworm, root (or passwordless sudo) for apt-get, and the Debian package registry.
# Environment:
#   NATFLOW_KUBE_CACHE       cache dir (default: ~/.cache/natflow/k8s-1.20.2)
#   NATFLOW_KUBE_KEEP_BUILD  set to 1 to keep the build tree (source + Go cache, ~2 GB) after a build
set -euo pipefail

readonly kube_version=1.20.2
readonly cache_dir=${NATFLOW_KUBE_CACHE:-$HOME/.cache/natflow/k8s-$kube_version}
readonly bin_dir=$cache_dir/bin
readonly kube_binaries=(kube-apiserver kube-controller-manager)
# Written next to the binaries after a build; binaries built by another recipe (e.g. without the
# reflect2 fix below, which crash on the first custom object) are rebuilt.
readonly build_recipe="kubernetes-$kube_version debian-source go-debian reflect2-1.0.2 openapi-empty-string cgo-0"
readonly recipe_file=$bin_dir/BUILD-RECIPE

missing_binaries() {
    local name
    for name in "${kube_binaries[@]}"; do
        if [[ ! -x $bin_dir/$name || $(cat "$recipe_file" 2>/dev/null) != "$build_recipe" ]]; then
            echo "$name"
        fi
    done
}

# Fast path: everything present, nothing to lock or install.
if [[ -z $(missing_binaries) ]] && command -v etcd >/dev/null; then
    echo "$cache_dir"
    exit 0
fi

log() { echo "ensure-kube-binaries: $*" >&2; }
# set -e alone exits silently; say where so a CI log shows what broke.
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    log "need root (or passwordless sudo) to apt-get install packages"
    exit 1
fi
command -v apt-get >/dev/null || { log "apt-get not found: this script needs Debian (bookworm)"; exit 1; }

mkdir -p "$cache_dir"
# Serialise concurrent callers (parallel test sessions) so the build runs once.
exec 9>"$cache_dir/.lock"
flock 9

# `apt-get update` only when an install fails, so a machine with fresh lists never waits for it.
apt_install() {
    # Lock timeout: wait for another apt/dpkg (e.g. unattended-upgrades) instead of failing.
    local -a apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive
        apt-get -y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
    if ! "${apt[@]}" install "$@" >&2; then
        log "install failed; running apt-get update and retrying"
        "${as_root[@]}" apt-get -q update >&2
        "${apt[@]}" install "$@" >&2
    fi
}

if ! command -v etcd >/dev/null; then
    log "installing etcd-server"
    apt_install etcd-server
fi

mapfile -t to_build < <(missing_binaries)
if [[ ${#to_build[@]} -eq 0 ]]; then
    echo "$cache_dir"
    exit 0
fi

needed_packages=()
for tool in rsync:rsync openssl:openssl make:make tar:tar; do
    command -v "${tool%%:*}" >/dev/null || needed_packages+=("${tool#*:}")
done
# Debian's Go (1.19 in bookworm), whatever other `go` is on PATH: the recipe is tested with it.
readonly debian_go_bin=/usr/lib/go/bin
[[ -x $debian_go_bin/go ]] || needed_packages+=(golang-go)
# Kubernetes 1.20 vendors modern-go/reflect2 v1.0.1, which breaks under Go >= 1.18 (Debian has only
# Go 1.19): the API server dies with SIGSEGV in mapiterinit on the first custom resource it encodes.
# v1.0.2 fixes exactly that; Debian packages it, so it replaces the vendored copy before the build.
readonly reflect2_package=golang-github-modern-go-reflect2-dev
readonly reflect2_source=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -f $reflect2_source/go_above_118.go ]] || needed_packages+=("$reflect2_package")
# debian-archive-keyring verifies the deb-src index fetched below.
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || needed_packages+=(debian-archive-keyring)
if [[ ${#needed_packages[@]} -gt 0 ]]; then
    log "installing ${needed_packages[*]}"
    apt_install "${needed_packages[@]}"
fi

# Download the source package through a private apt config: deb-src is not in the system's sources
# and we must not edit them.
src_dir=$cache_dir/src
apt_dir=$cache_dir/apt
mkdir -p "$src_dir" "$apt_dir/sources" "$apt_dir/lists/partial"
cat >"$apt_dir/sources/src.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
private_apt=(
    apt-get -q
    -o Dir::Etc::SourceList=/dev/null
    -o "Dir::Etc::SourceParts=$apt_dir/sources"
    -o "Dir::State::Lists=$apt_dir/lists"
    # The cache dir may sit under /root, which apt's unprivileged `_apt` user cannot enter.
    -o APT::Sandbox::User=root
)
# Debian's upstream version is "1.20.5+really1.20.2": find the tarball by glob and check its top dir.
find_orig_tarball() { compgen -G "$src_dir/kubernetes_*.orig.tar.gz" | head -n1 || true; }
orig_tarball=$(find_orig_tarball)
if [[ -z $orig_tarball ]]; then
    log "downloading the kubernetes source package (34 MB)"
    "${private_apt[@]}" update >&2
    (cd "$src_dir" && "${private_apt[@]}" source --download-only kubernetes >&2)
    orig_tarball=$(find_orig_tarball)
fi
[[ -n $orig_tarball ]] || { log "apt-get source produced no kubernetes_*.orig.tar.gz in $src_dir"; exit 1; }
# `|| true`: head closing the pipe early makes tar fail with SIGPIPE under pipefail.
top_dir=$(tar -tzf "$orig_tarball" | head -n1) || true
if [[ ${top_dir%/} != "kubernetes-$kube_version" ]]; then
    log "$(basename "$orig_tarball") holds ${top_dir%/}, not kubernetes-$kube_version"
    exit 1
fi

build_root=$cache_dir/build
tree=$build_root/kubernetes-$kube_version
if [[ ! -f $tree/.unpacked ]]; then
    log "unpacking $(basename "$orig_tarball")"
    rm -rf "$tree"
    mkdir -p "$tree"
    tar -xzf "$orig_tarball" -C "$tree" --strip-components=1
    touch "$tree/.unpacked"
fi
# The Kubernetes 1.20 build expects a GOPATH layout with the tree at k8s.io/kubernetes.
mkdir -p "$tree/.go/src/k8s.io"
ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"

# No git checkout is needed for the version: the tarball is a `git archive` export, so
# hack/lib/version.sh already carries v1.20.2 and its commit.

[[ -f $reflect2_source/go_above_118.go ]] || { log "$reflect2_package lacks the Go 1.18 fix"; exit 1; }
vendored_reflect2=$tree/vendor/github.com/modern-go/reflect2
rm -f "$vendored_reflect2"/*.go "$vendored_reflect2"/*.s
cp "$reflect2_source"/*.go "$reflect2_source"/*.s "$vendored_reflect2/"

# Under Go >= 1.19 kube-openapi's zero-value test also matches "", so the 1.20 server would reject
# every empty string in a custom resource as null (a real server accepts them). Test only nil.
openapi_type_go=$tree/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go
sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' \
    "$openapi_type_go"
grep -q 'if data == nil {' "$openapi_type_go" || { log "could not patch $openapi_type_go"; exit 1; }

targets=()
for name in "${to_build[@]}"; do targets+=("cmd/$name"); done
log "building ${targets[*]} (about 7 minutes for both on 2 cores)"
build_started=$SECONDS
mkdir -p "$build_root/home"
(
    cd "$tree"
    export PATH=$debian_go_bin:$PATH GOPATH=$tree/.go CGO_ENABLED=0 GOPROXY=off
    # A caller's Go settings (another GOROOT, -mod=mod) would break the vendored, offline build.
    unset GOROOT GOFLAGS GO111MODULE
    export HOME=$build_root/home GOCACHE=$build_root/home/go-build
    make WHAT="${targets[*]}" >&2
)
log "build took $((SECONDS - build_started)) s"

mkdir -p "$bin_dir"
output_dir=$tree/_output/local/bin/$("$debian_go_bin/go" env GOHOSTOS)/$("$debian_go_bin/go" env GOHOSTARCH)
for name in "${to_build[@]}"; do
    built=$output_dir/$name
    [[ -x $built ]] || { log "build produced no $built"; exit 1; }
    # Copy then rename so a reader never sees a half-written binary.
    cp "$built" "$bin_dir/.$name.tmp"
    mv -f "$bin_dir/.$name.tmp" "$bin_dir/$name"
done
echo "$build_recipe" >"$recipe_file"

if [[ ${NATFLOW_KUBE_KEEP_BUILD:-0} != 1 ]]; then
    rm -rf "$build_root"
fi
echo "$cache_dir"
