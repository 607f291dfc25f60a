"""Shared fixtures: VMI builders and paths to the golden domain XML files."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

TESTS_DIR = pathlib.Path(__file__).parent
REPO_ROOT = TESTS_DIR.parent
GOLDEN_DIR = TESTS_DIR / "golden"

# tools/ contains the virt-launcher stand-in that the server tests drive.
sys.path.insert(0, str(REPO_ROOT / "tools"))

PIN_LIST_ANNOTATION = "cpu-pinning.vm.kubevirt.io/pinning"

# Property tests draw the same examples on every run, so a failure in CI
# reproduces anywhere. `pytest --hypothesis-profile=explore` draws new,
# random examples and more of them, to hunt for new failures.
settings.register_profile("reproducible", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile("reproducible")


def make_vmi(
    pins: list[str] | None = None,
    *,
    name: str = "fedora-pinned",
    namespace: str = "default",
    cores: int = 2,
    annotations: dict[str, str] | None = None,
    cpu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a VMI document with the pin list in the annotation, as users write it."""
    all_annotations = dict(annotations or {})
    if pins is not None:
        all_annotations[PIN_LIST_ANNOTATION] = json.dumps(pins)
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "3b0e9ae2-55a5-4a7c-9d62-0c1f6a1c4e21",
            "annotations": all_annotations,
        },
        "spec": {"domain": {"cpu": {"cores": cores, "sockets": 1, "threads": 1, **(cpu or {})}}},
    }


def vmi_bytes(pins: list[str] | None = None, **kwargs: Any) -> bytes:
    return json.dumps(make_vmi(pins, **kwargs)).encode()


@pytest.fixture
def launcher_domain() -> bytes:
    """A 4-vCPU domain in virt-launcher's encoding: tabs, explicit end tags."""
    return (GOLDEN_DIR / "launcher-4vcpu.xml").read_bytes()


@pytest.fixture(scope="session")
def virt() -> Any:
    """The process's one embedded libvirt (qemu:///embed), with QEMU under TCG."""
    import realvirt

    realvirt.require_libvirt()
    return realvirt.shared_session()


def build_domain(
    vcpus: int,
    *,
    cores: int | None = None,
    threads: int = 1,
    sockets: int = 1,
    cputune: str = "",
    iothreads: int = 0,
    enabled_vcpus: int | None = None,
    domain_type: str = "kvm",
    name: str = "default_fedora-pinned",
) -> bytes:
    """Build a virt-launcher-shaped domain: tab indents, explicit end tags.

    `enabled_vcpus` adds a `<vcpus>` list as KubeVirt writes it for vCPU
    hotplug, with the vCPUs from that index on offline.
    """
    cores = cores if cores is not None else vcpus // (sockets * threads)
    lines = [
        f'<domain type="{domain_type}" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">',
        f"\t<name>{name}</name>",
        '\t<memory unit="b">1073741824</memory>',
        "\t<os>",
        '\t\t<type arch="x86_64" machine="q35">hvm</type>',
        "\t</os>",
        '\t<cpu mode="host-model">',
        f'\t\t<topology sockets="{sockets}" cores="{cores}" threads="{threads}"></topology>',
        "\t</cpu>",
        f'\t<vcpu placement="static">{vcpus}</vcpu>',
    ]
    if enabled_vcpus is not None:
        lines += hotplug_vcpus(vcpus, enabled_vcpus, indent="\t")
    if iothreads:
        lines.append(f"\t<iothreads>{iothreads}</iothreads>")
    if cputune:
        lines.append("\t<cputune>")
        lines += [f"\t\t{line}" for line in cputune.strip().splitlines()]
        lines.append("\t</cputune>")
    lines.append("</domain>")
    return "\n".join(lines).encode()


def hotplug_vcpus(vcpus: int, enabled_vcpus: int, *, indent: str = "") -> list[str]:
    """Return the lines of a `<vcpus>` list as KubeVirt writes it for vCPU hotplug.

    vCPU 0 is always online and not hotpluggable; vCPUs from `enabled_vcpus` on are offline.
    """
    lines = [f"{indent}<vcpus>"]
    for vcpu in range(vcpus):
        enabled = "yes" if vcpu < enabled_vcpus else "no"
        hotpluggable = "no" if vcpu == 0 else "yes"
        lines.append(f'{indent * 2}<vcpu id="{vcpu}" enabled="{enabled}" hotpluggable="{hotpluggable}"></vcpu>')
    lines.append(f"{indent}</vcpus>")
    return lines


def make_sysfs(
    root: pathlib.Path,
    online: str,
    *,
    siblings: dict[int, str] | None = None,
    packages: dict[int, int] | None = None,
    nodes: dict[int, str] | None = None,
) -> pathlib.Path:
    """Write a fake /sys/devices/system tree and return its cpu directory.

    `siblings` maps a CPU to its thread_siblings_list; CPUs not named are
    their own core. `packages` maps a CPU to its physical_package_id
    (default 0). `nodes` maps a NUMA node to its cpulist.
    """
    from pinning_hook.cpusets import parse_cpuset

    cpu_root = root / "devices" / "system" / "cpu"
    cpu_root.mkdir(parents=True)
    (cpu_root / "online").write_text(online + "\n")
    for cpu in sorted(parse_cpuset(online)):
        topology = cpu_root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text((siblings or {}).get(cpu, str(cpu)) + "\n")
        (topology / "physical_package_id").write_text(f"{(packages or {}).get(cpu, 0)}\n")
        (topology / "core_id").write_text(f"{cpu}\n")
    for node, cpulist in (nodes or {}).items():
        node_dir = root / "devices" / "system" / "node" / f"node{node}"
        node_dir.mkdir(parents=True)
        (node_dir / "cpulist").write_text(cpulist + "\n")
    return cpu_root


@pytest.fixture
def socket_dir() -> Iterator[pathlib.Path]:
    """An empty directory with a short path, since a unix socket path has at most 107 bytes."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="pinning-hook-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
