# Sourced by the other scripts: installs what the build needs when missing and exports
# LIBTORCH and LD_LIBRARY_PATH for tch. The loader decodes JPEG with libjpeg-turbo (Debian's
# libturbojpeg0-dev, found through pkg-config). The trainer's bridge to libtorch's distributed
# engine compiles against Gloo's headers (Debian's libgloo-dev).

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
fi

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing Debian packages: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >&2
    fi
}

apt_install pkg-config libturbojpeg0-dev fonts-dejavu-core libgloo-dev

if [ -z "${LIBTORCH:-}" ]; then
    LIBTORCH=$(bash "$(dirname "${BASH_SOURCE[0]}")/setup-libtorch.sh" | tail -n 1)
fi
export LIBTORCH
export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Converts Fashion-MNIST into shards/fashion-mnist with the shardify binary in folder $1, unless
# the shards are there already.
fashion_mnist_shards() {
    apt_install dataset-fashion-mnist
    if [ ! -f shards/fashion-mnist/manifest.json ]; then
        "$1/shardify" /usr/share/datasets/fashion-mnist shards/fashion-mnist --classes \
            "t-shirt/top,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle boot"
    fi
}
