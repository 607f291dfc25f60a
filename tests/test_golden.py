"""Golden domain XML: the rewrite of virt-launcher-shaped domains, byte for byte.

Run with PINNING_HOOK_REGENERATE=1 to rewrite the expected files after an
intended change, then review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import pytest
from conftest import GOLDEN_DIR, make_vmi
from lxml import etree

from pinning_hook.cpusets import parse_cpuset
from pinning_hook.host import HostCpuSource
from pinning_hook.rewrite import rewrite_domain
from pinning_hook.vmi import parse_vmi_json

EXPECTED_DIR = GOLDEN_DIR / "expected"
REGENERATE = os.environ.get("PINNING_HOOK_REGENERATE") == "1"
# No sysfs here: the golden output must not depend on the test machine's topology.
NO_SYSFS = pathlib.Path("/nonexistent/sys/devices/system/cpu")


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    domain: str
    vmi: dict[str, Any]
    host_cpus: str = "0-7"


CASES = [
    Case("basic", "launcher-4vcpu.xml", make_vmi(["0-2", "1-3"], cores=4)),
    Case("partial", "launcher-4vcpu.xml", make_vmi(["0-2"], cores=4)),
    Case("cpuset-entries", "launcher-4vcpu.xml", make_vmi(["0:0-3,^2", "3:6-7"], cores=4)),
    Case("bad-entries-dropped", "launcher-4vcpu.xml", make_vmi(["0-2", "1-99", "9-1", "-1-1", "x", "3-5"], cores=4)),
    Case("spec-field", "launcher-4vcpu.xml", make_vmi(None, cores=4, cpu={"pinning": ["2-6"]})),
    Case(
        "dedicated-repinned",
        "launcher-dedicated.xml",
        make_vmi(["0-5", "1-4"], cpu={"dedicatedCpuPlacement": True}),
        host_cpus="0-1",
    ),
    Case(
        "dedicated-partial",
        "launcher-dedicated.xml",
        make_vmi(["1-4"], cpu={"dedicatedCpuPlacement": True}),
        host_cpus="0-1",
    ),
    Case("one-line-domain", "one-line.xml", make_vmi(["0-1", "1-0"])),
    Case(
        "hotplug-offline-vcpus",
        "launcher-hotplug.xml",
        make_vmi(["0-1", "6-3"], cores=1, cpu={"sockets": 4, "maxSockets": 8}),
    ),
    Case(
        "emulator-and-iothread-pins",
        "launcher-dedicated.xml",
        make_vmi(
            ["1-4"],
            cpu={"dedicatedCpuPlacement": True},
            annotations={
                "cpu-pinning.vm.kubevirt.io/emulatorpin": "5",
                "cpu-pinning.vm.kubevirt.io/iothreadpin": '["1:4-5"]',
            },
        ),
        host_cpus="0-1",
    ),
    Case(
        "auto-policy",
        "launcher-4vcpu.xml",
        make_vmi(["0-2"], cores=4, annotations={"cpu-pinning.vm.kubevirt.io/policy": "auto"}),
        host_cpus="0-3",
    ),
]


def run_case(case: Case, domain_xml: bytes) -> bytes:
    vmi = parse_vmi_json(json.dumps(case.vmi).encode())
    host = HostCpuSource(override=parse_cpuset(case.host_cpus), sysfs_cpu_root=NO_SYSFS)
    return rewrite_domain(domain_xml, vmi, host).domain_xml


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_golden_output(case: Case) -> None:
    output = run_case(case, (GOLDEN_DIR / case.domain).read_bytes())
    expected_path = EXPECTED_DIR / f"{case.id}.xml"
    if REGENERATE:
        EXPECTED_DIR.mkdir(exist_ok=True)
        expected_path.write_bytes(output)

    assert output.decode() == expected_path.read_text()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_golden_rewrite_is_idempotent(case: Case) -> None:
    once = run_case(case, (GOLDEN_DIR / case.domain).read_bytes())

    assert run_case(case, once) == once


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_golden_keeps_everything_but_pins(case: Case) -> None:
    source = etree.fromstring((GOLDEN_DIR / case.domain).read_bytes())
    output = etree.fromstring(run_case(case, (GOLDEN_DIR / case.domain).read_bytes()))
    for tree in (source, output):
        for pin in tree.xpath("cputune/vcpupin | cputune/emulatorpin | cputune/iothreadpin"):
            pin.getparent().remove(pin)
        cputune = tree.find("cputune")
        if cputune is not None and len(cputune) == 0:
            tree.remove(cputune)
        etree.indent(tree)

    assert etree.tostring(output) == etree.tostring(source)


def test_expected_files_all_used() -> None:
    expected = {path.stem for path in EXPECTED_DIR.glob("*.xml")}

    assert expected == {case.id for case in CASES}
