"""Reading a running domain's vCPU affinities straight from libvirt.

This is the `verify --connect URI --domain NAME` path. The libvirt Python
binding (pip package libvirt-python) is imported only here and only when
called, so the sidecar image and every other command run without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pinning_hook.errors import PinningHookError

_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


class LibvirtError(PinningHookError):
    """libvirt is not importable, or cannot connect or find the domain."""


def read_live_affinities(uri: str, domain: str) -> dict[int, frozenset[int]]:
    """Connect read-only to `uri` and return the domain's vCPU -> host CPUs.

    `domain` is looked up as virsh does: as an ID when it is a number, then
    as a UUID, then as a name. Raises LibvirtError.
    """
    try:
        import libvirt
    except ImportError as error:
        raise LibvirtError(
            "--connect needs the libvirt Python binding: install the pip package libvirt-python "
            "(it builds against libvirt's headers), or pipe `virsh vcpupin` output instead"
        ) from error

    # Each libvirt error is raised as an exception and reported once. Without
    # this handler, libvirt would also print it to stderr.
    libvirt.registerErrorHandler(lambda context, error: None, None)
    try:
        connection = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as error:
        raise LibvirtError(f"cannot connect to libvirt at {uri!r}: {error.get_error_message()}") from error
    try:
        return vcpu_affinities(_lookup_domain(connection, domain))
    except libvirt.libvirtError as error:
        raise LibvirtError(f"cannot read the vCPU pins of domain {domain!r}: {error.get_error_message()}") from error
    finally:
        connection.close()


def vcpu_affinities(domain: Any) -> dict[int, frozenset[int]]:
    """Return the vCPU -> host CPUs of a `libvirt.virDomain`, as `virsh vcpupin` shows them."""
    # libvirt-python annotates vcpuPinInfo() as returning str, but it returns
    # one tuple of booleans per vCPU, indexed by host CPU.
    rows: Sequence[Sequence[bool]] = domain.vcpuPinInfo(0)
    return {vcpu: frozenset(cpu for cpu, allowed in enumerate(row) if allowed) for vcpu, row in enumerate(rows)}


def _lookup_domain(connection: Any, domain: str) -> Any:
    import libvirt

    if domain.isascii() and domain.isdigit():
        try:
            return connection.lookupByID(int(domain))
        except libvirt.libvirtError:
            pass
    if _UUID.fullmatch(domain):
        try:
            return connection.lookupByUUIDString(domain)
        except libvirt.libvirtError:
            pass
    return connection.lookupByName(domain)
