#!/usr/bin/env bash
# Install the Debian packages that the tests and the demo need (libvirt,
# QEMU, and what libvirt-python builds with), plus any package names given
# as arguments. Running it again changes nothing: it installs only missing
# packages and creates the libvirt-qemu user and group only when they are
# missing. It starts no daemon and writes no libvirt configuration, because
# the tests use qemu:///embed roots with their own qemu.conf. It needs root
# only when something is missing.
set -euo pipefail

packages=(
    libvirt-daemon             # helper programs of the drivers (and libvirtd, not started)
    libvirt-daemon-driver-qemu # the QEMU driver that qemu:///embed loads
    libvirt-clients            # virsh
    qemu-system-x86            # qemu-system-x86_64, run with TCG
    libvirt-dev                # headers to build libvirt-python from PyPI
    pkg-config
    gcc
    python3                    # the system interpreter that tests/test_image.py installs the wheel for
    "$@"
)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query --show --showformat='${Status}' "$package" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} > 0)); then
    if [[ $EUID -ne 0 ]]; then
        echo "error: missing Debian packages: ${missing[*]}; run this as root to install them" >&2
        exit 1
    fi
    echo "Installing missing packages: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# libvirt 9.0.0 looks up its build-time default QEMU user and group, both
# named libvirt-qemu, when the QEMU driver starts, even when qemu.conf sets
# user and group to root. Debian's libvirt-daemon-system package is not
# installed here because it also runs libvirtd, so create them here.
if [[ $EUID -ne 0 ]]; then
    getent passwd libvirt-qemu >/dev/null || echo "warning: no libvirt-qemu user; run this as root to create it" >&2
    exit 0
fi
if ! getent group libvirt-qemu >/dev/null; then
    echo "Creating system group libvirt-qemu"
    groupadd --system libvirt-qemu
fi
if ! getent passwd libvirt-qemu >/dev/null; then
    echo "Creating system user libvirt-qemu"
    useradd --system --no-create-home --gid libvirt-qemu \
        --shell /usr/sbin/nologin libvirt-qemu
fi
