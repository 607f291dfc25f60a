"""End to end: the sidecar's output started under real libvirt and QEMU (TCG).

The sidecar detects the host CPUs itself, as in a pod. The pins are checked
three ways: libvirt's vcpuPinInfo, the kernel's Cpus_allowed_list of each
`CPU n/TCG` thread, and the text the real `virsh vcpupin` prints.
"""

from __future__ import annotations

import pathlib

import pytest
import realvirt
from conftest import GOLDEN_DIR, vmi_bytes
from sidecar import Sidecar

from pinning_hook.cpusets import format_cpuset
from pinning_hook.planning import describe_cpus

pytestmark = pytest.mark.libvirt


@pytest.fixture
def domain_xml() -> bytes:
    return (GOLDEN_DIR / "qemu-2vcpu.xml").read_bytes()


@pytest.fixture
def host() -> list[int]:
    cpus = sorted(realvirt.host_cpus())
    if len(cpus) < 2:
        pytest.skip(f"swapping two vCPUs needs two host CPUs; this host has {cpus}")
    return cpus


def rewrite(tmp_path: pathlib.Path, domain_xml: bytes, pins: list[str]) -> tuple[bytes, list[dict[str, object]]]:
    """Run the domain through a real sidecar, as virt-launcher does, twice."""
    with Sidecar(tmp_path) as sidecar:
        first = sidecar.client().on_define_domain(domain_xml, vmi_bytes(pins, name="e2e-pinned"))
        # virt-launcher may call the hook again with the previous output.
        second = sidecar.client().on_define_domain(first, vmi_bytes(pins, name="e2e-pinned"))
    assert second == first
    return first, sidecar.log_records()


def test_pins_reach_qemu_threads(
    virt: realvirt.EmbeddedLibvirt, tmp_path: pathlib.Path, domain_xml: bytes, host: list[int]
) -> None:
    low, high = host[0], host[-1]
    output, _ = rewrite(tmp_path, domain_xml, [f"0-{high}", f"1-{low}"])
    expected = {0: frozenset({high}), 1: frozenset({low})}

    with virt.running_domain(output.decode()) as domain:
        assert realvirt.libvirt_pins(domain) == expected
        assert realvirt.kernel_pins(domain) == expected


def test_virsh_vcpupin_shows_pins(
    virt: realvirt.EmbeddedLibvirt, tmp_path: pathlib.Path, domain_xml: bytes, host: list[int]
) -> None:
    low, high = host[0], host[-1]
    output, _ = rewrite(tmp_path, domain_xml, [f"0-{high}", f"1-{low}"])
    domain_file = tmp_path / "domain.xml"
    domain_file.write_bytes(output)

    table = realvirt.run_virsh_vcpupin(domain_file, capabilities_cache_from=virt.root)

    assert table.splitlines()[:2] == [" VCPU   CPU Affinity", "----------------------"]
    assert realvirt.parse_virsh_vcpupin(table) == {0: frozenset({high}), 1: frozenset({low})}


def test_cpu_beyond_host_logs_and_floats(
    virt: realvirt.EmbeddedLibvirt, tmp_path: pathlib.Path, domain_xml: bytes, host: list[int]
) -> None:
    beyond = max(host) + 64
    output, records = rewrite(tmp_path, domain_xml, [f"0-{host[0]}", f"1-{beyond}"])
    available = frozenset(host)

    warnings = [record["msg"] for record in records if record["level"] == "warning" and "problem" in record]
    assert warnings == [f"impossible to pin {beyond} on host where we have only {describe_cpus(available)}"] * 2
    with virt.running_domain(output.decode()) as domain:
        assert realvirt.libvirt_pins(domain) == {0: frozenset({host[0]}), 1: available}
        assert realvirt.kernel_pins(domain) == {0: frozenset({host[0]}), 1: available}


def test_unnamed_vcpu_floats(
    virt: realvirt.EmbeddedLibvirt, tmp_path: pathlib.Path, domain_xml: bytes, host: list[int]
) -> None:
    output, _ = rewrite(tmp_path, domain_xml, [f"0-{host[-1]}"])
    available = frozenset(host)

    with virt.running_domain(output.decode()) as domain:
        assert realvirt.libvirt_pins(domain) == {0: frozenset({host[-1]}), 1: available}
        assert realvirt.kernel_pins(domain) == {0: frozenset({host[-1]}), 1: available}


def test_auto_policy_and_emulator_pin_reach_qemu(
    virt: realvirt.EmbeddedLibvirt, tmp_path: pathlib.Path, domain_xml: bytes, host: list[int]
) -> None:
    low, high = host[0], host[-1]
    annotations = {"cpu-pinning.vm.kubevirt.io/policy": "auto", "cpu-pinning.vm.kubevirt.io/emulatorpin": str(high)}
    with Sidecar(tmp_path) as sidecar:
        vmi = vmi_bytes([f"0-{high}"], name="e2e-pinned", annotations=annotations)
        output = sidecar.client().on_define_domain(domain_xml, vmi)

    with virt.running_domain(output.decode()) as domain:
        # vCPU 1 gets the one CPU that neither vCPU 0 nor the emulator threads use.
        expected = {0: frozenset({high}), 1: frozenset({low})}
        assert realvirt.libvirt_pins(domain) == expected
        assert realvirt.kernel_pins(domain) == expected
        assert realvirt.parse_cpu_list(format_cpuset(domain_emulator_pin(domain))) == frozenset({high})


def domain_emulator_pin(domain: object) -> set[int]:
    """Return the host CPUs libvirt reports for the emulator threads."""
    cpumap = domain.emulatorPinInfo()  # type: ignore[attr-defined]
    return {cpu for cpu, allowed in enumerate(cpumap) if allowed}


def test_offline_vcpu_pin_applies_on_hotplug(
    virt: realvirt.EmbeddedLibvirt, tmp_path: pathlib.Path, domain_xml: bytes, host: list[int]
) -> None:
    import libvirt

    low, high = host[0], host[-1]
    # vCPU 1 starts offline, as KubeVirt writes it for vCPU hotplug.
    hotplug = domain_xml.replace(
        b'<vcpu placement="static">2</vcpu>',
        b'<vcpu placement="static" current="1">2</vcpu>\n\t<vcpus>\n'
        b'\t\t<vcpu id="0" enabled="yes" hotpluggable="no"></vcpu>\n'
        b'\t\t<vcpu id="1" enabled="no" hotpluggable="yes"></vcpu>\n\t</vcpus>',
    )
    output, _ = rewrite(tmp_path, hotplug, [f"0-{high}", f"1-{low}"])

    with virt.running_domain(output.decode()) as domain:
        assert realvirt.kernel_pins(domain) == {0: frozenset({high})}
        domain.setVcpusFlags(2, libvirt.VIR_DOMAIN_AFFECT_LIVE)

        assert realvirt.kernel_pins(domain) == {0: frozenset({high}), 1: frozenset({low})}
