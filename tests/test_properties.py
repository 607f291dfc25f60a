"""Property-based tests of the whole rewrite over random pin lists, hosts and domains.

Every output must parse, hold at most one `<vcpupin>` per vCPU, pin only
within the available host CPUs, come back unchanged when rewritten again,
and be accepted by real libvirt's define.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from typing import Any

from conftest import build_domain, make_sysfs, make_vmi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from pinning_hook.cpusets import format_cpuset, parse_cpuset
from pinning_hook.errors import StrictPolicyViolation
from pinning_hook.host import HostCpuSource
from pinning_hook.rewrite import rewrite_domain
from pinning_hook.vmi import parse_vmi_json

HOST_CPU_LIMIT = 48

entries = st.one_of(
    st.builds(lambda v, p: f"{v}-{p}", st.integers(0, 40), st.integers(0, 60)),
    st.builds(
        lambda v, a, b, x: f"{v}:{min(a, b)}-{max(a, b)},^{x}",
        st.integers(0, 40),
        st.integers(0, 60),
        st.integers(0, 60),
        st.integers(0, 60),
    ),
    st.builds(lambda v, p: f" {v}-{p}\t", st.integers(0, 4), st.integers(0, 4)),
    st.sampled_from(["-1-2", "1--2", "x", "", "1:", "1:3-1", "٣-1", "0-99999999999", "1:0-99999", "2:5,^5"]),
    st.text(max_size=8),
)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    threads = draw(st.sampled_from([1, 2]))
    cores = draw(st.integers(1, 4))
    sockets = draw(st.integers(1, 3))
    vcpus = sockets * cores * threads
    online = draw(st.sets(st.integers(0, HOST_CPU_LIMIT - 1), min_size=1, max_size=HOST_CPU_LIMIT))
    half = HOST_CPU_LIMIT // 2
    dedicated = draw(st.booleans())
    existing = ""
    if dedicated:
        # KubeVirt's dedicated pins: one online CPU per vCPU.
        ordered = sorted(online)
        existing = "\n".join(
            f'<vcpupin vcpu="{vcpu}" cpuset="{ordered[vcpu % len(ordered)]}"></vcpupin>' for vcpu in range(vcpus)
        )
    return {
        "vcpus": vcpus,
        "sockets": sockets,
        "cores": cores,
        "threads": threads,
        "online": online,
        # CPU n and n+24 are SMT siblings; CPUs below 24 are NUMA node 0.
        "siblings": {cpu: format_cpuset({cpu % half, cpu % half + half} & online) for cpu in online},
        "nodes": {node: format_cpuset(cpus) for node in (0, 1) if (cpus := {c for c in online if c // half == node})},
        "pins": draw(st.lists(entries, max_size=12)),
        "policy": draw(st.sampled_from([None, "float", "strict", "auto", "sticky"])),
        "dedicated": dedicated,
        "existing": existing,
        "emulator": draw(st.sampled_from([None, "0", "1-3", "63"])),
    }


def rewrite(scenario: dict[str, Any], domain_xml: bytes, sysfs_root: pathlib.Path) -> tuple[bytes, frozenset[int]]:
    annotations = {}
    if scenario["policy"] is not None:
        annotations["cpu-pinning.vm.kubevirt.io/policy"] = scenario["policy"]
    if scenario["emulator"] is not None:
        annotations["cpu-pinning.vm.kubevirt.io/emulatorpin"] = scenario["emulator"]
    document = make_vmi(
        scenario["pins"],
        cores=scenario["cores"],
        annotations=annotations,
        cpu={"dedicatedCpuPlacement": scenario["dedicated"]},
    )
    vmi = parse_vmi_json(json.dumps(document).encode())
    host = HostCpuSource(override=frozenset(scenario["online"]), sysfs_cpu_root=sysfs_root)
    outcome = rewrite_domain(domain_xml, vmi, host)
    available = outcome.plan.available if outcome.plan is not None else frozenset(scenario["online"])
    return outcome.domain_xml, available


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_rewrite_properties(scenario: dict[str, Any], virt: Any) -> None:
    domain_xml = build_domain(
        scenario["vcpus"],
        sockets=scenario["sockets"],
        cores=scenario["cores"],
        threads=scenario["threads"],
        cputune=scenario["existing"],
        domain_type="qemu",
        name="property-test",
    )
    with tempfile.TemporaryDirectory() as directory:
        sysfs_root = make_sysfs(
            pathlib.Path(directory),
            format_cpuset(scenario["online"]),
            siblings=scenario["siblings"],
            nodes=scenario["nodes"],
        )
        try:
            output, available = rewrite(scenario, domain_xml, sysfs_root)
        except StrictPolicyViolation:
            assert scenario["policy"] == "strict"
            return
        again, _ = rewrite(scenario, output, sysfs_root)

    root = etree.fromstring(output)
    vcpus = [int(pin.get("vcpu")) for pin in root.iterfind("cputune/vcpupin")]
    assert len(vcpus) == len(set(vcpus))
    assert all(0 <= vcpu < scenario["vcpus"] for vcpu in vcpus)
    for pin in root.iterfind("cputune/vcpupin"):
        assert parse_cpuset(pin.get("cpuset")) <= available
    assert again == output

    domain = virt.connection.defineXML(output.decode())
    domain.undefine()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(scenario=scenarios())
def test_auto_floats_only_when_cpus_run_out(scenario: dict[str, Any]) -> None:
    scenario = {**scenario, "policy": "auto", "dedicated": False, "existing": "", "emulator": None}
    domain_xml = build_domain(
        scenario["vcpus"], sockets=scenario["sockets"], cores=scenario["cores"], threads=scenario["threads"]
    )
    with tempfile.TemporaryDirectory() as directory:
        sysfs_root = make_sysfs(pathlib.Path(directory), format_cpuset(scenario["online"]))
        output, available = rewrite(scenario, domain_xml, sysfs_root)

    pins = {
        int(pin.get("vcpu")): parse_cpuset(pin.get("cpuset"))
        for pin in etree.fromstring(output).iterfind("cputune/vcpupin")
    }
    floating = [vcpu for vcpu in range(scenario["vcpus"]) if vcpu not in pins]
    used = set().union(*pins.values()) if pins else set()
    if floating:
        # Only when every available CPU is already taken by some pin.
        assert used >= available
