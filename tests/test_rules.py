"""The pinning rules, one case per rule, through the same rewrite the server runs.

Each case gives a VMI, a domain and a host, and states the resulting pins
and the exact messages, advisories included, in the order they are logged.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import pytest
from conftest import build_domain, make_sysfs, make_vmi
from lxml import etree

from pinning_hook.cpusets import format_cpuset, parse_cpuset
from pinning_hook.errors import InvalidInput, StrictPolicyViolation
from pinning_hook.host import HostCpuSource
from pinning_hook.rewrite import Outcome, rewrite_domain
from pinning_hook.vmi import parse_vmi_json

POLICY = "cpu-pinning.vm.kubevirt.io/policy"
EMULATOR_PIN = "cpu-pinning.vm.kubevirt.io/emulatorpin"
IOTHREAD_PIN = "cpu-pinning.vm.kubevirt.io/iothreadpin"

# Two packages of four cores with two threads each: CPU n and n+8 are SMT
# siblings; NUMA node 0 is CPUs 0-3,8-11 and node 1 is CPUs 4-7,12-15.
SMT_HOST = {
    "online": "0-15",
    "siblings": {cpu: f"{cpu % 8},{cpu % 8 + 8}" for cpu in range(16)},
    "packages": {cpu: (cpu % 8) // 4 for cpu in range(16)},
    "nodes": {0: "0-3,8-11", 1: "4-7,12-15"},
}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    pins: list[str] | None
    expected_pins: dict[int, str]
    messages: list[str] = dataclasses.field(default_factory=list)
    vcpus: int = 4
    host: str = "0-7"
    domain: dict[str, Any] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    cpu: dict[str, Any] = dataclasses.field(default_factory=dict)
    status: dict[str, Any] | None = None
    sysfs: dict[str, Any] | None = None


def run(case: Case, tmp_path: pathlib.Path) -> Outcome:
    document = make_vmi(case.pins, cores=case.vcpus, annotations=case.annotations, cpu=case.cpu)
    if case.status is not None:
        document["status"] = case.status
    vmi = parse_vmi_json(json.dumps(document).encode())
    sysfs_root = make_sysfs(tmp_path, **case.sysfs) if case.sysfs else tmp_path / "no-sysfs"
    host = HostCpuSource(override=parse_cpuset(case.host), sysfs_cpu_root=sysfs_root)
    return rewrite_domain(build_domain(case.vcpus, **case.domain), vmi, host)


def pins_of(domain_xml: bytes) -> dict[int, str]:
    root = etree.fromstring(domain_xml)
    return {int(pin.get("vcpu")): pin.get("cpuset") for pin in root.iterfind("cputune/vcpupin")}


CASES = [
    # The pin list.
    Case("basic-form", ["0-2", "1-3"], {0: "2", 1: "3"}),
    Case("cpuset-form-with-exclusion", ["1:0-3,^2"], {1: "0-1,3"}),
    Case("spaces-around-entry", [" 0-2 ", "\t1:3 "], {0: "2", 1: "3"}),
    Case(
        "malformed-entry",
        ["0x2"],
        {},
        ["invalid pin entry '0x2': it is in neither accepted form"],
    ),
    Case(
        "non-ascii-digits",
        ["٠-٢"],
        {},
        ["invalid pin entry '٠-٢': it is in neither accepted form"],
    ),
    Case(
        "reversed-range",
        ["0:3-1"],
        {},
        ["invalid pin entry '0:3-1': '3-1': the range ends before it starts"],
    ),
    Case(
        "exclusions-leave-nothing",
        ["0:1,^1"],
        {},
        ["invalid pin entry '0:1,^1': its exclusions leave no host CPU"],
    ),
    Case(
        "number-beyond-any-host",
        ["0-99999999999999999999"],
        {},
        ["impossible to pin 99999999999999999999 on host where we have only 8"],
    ),
    Case(
        "cpuset-beyond-libvirt-limit",
        ["0:0-99999", "1:99999"],
        {},
        [
            "impossible to pin 8 on host where we have only 8",
            "impossible to pin 99999 on host where we have only 8",
        ],
    ),
    Case(
        "duplicate-vcpu-last-wins",
        ["1-2", "1-3"],
        {1: "3"},
        ["vCPU 1 is listed twice: '1-3' replaces '1-2'"],
    ),
    Case("negative-number", ["-1-2", "0--3"], {}, ["impossible to pin negative number"] * 2),
    Case("vcpu-beyond-vm", ["4-1"], {}, ["impossible to pin 4 on VM where we have only 4"]),
    Case(
        "host-with-holes",
        ["0-2", "1-4"],
        {1: "4"},
        ["impossible to pin 2 on host where we have only 4 (0-1,4-5)"],
        host="0-1,4-5",
    ),
    # Policies.
    Case(
        "unknown-policy-floats",
        ["0-9"],
        {},
        ["unknown pinning policy 'sticky'; using float", "impossible to pin 9 on host where we have only 8"],
        annotations={POLICY: "sticky"},
    ),
    Case("strict-without-problems", ["0-2", "1-3"], {0: "2", 1: "3"}, annotations={POLICY: "strict"}),
    Case(
        "strict-ignores-advisories",
        ["0-2", "1-2"],
        {0: "2", 1: "2"},
        ["vCPUs 0-1 share host CPU 2"],
        annotations={POLICY: "strict"},
    ),
    Case(
        "auto-fills-floating-vcpus",
        ["0-0"],
        {0: "0", 1: "1", 2: "2", 3: "3"},
        annotations={POLICY: "auto"},
    ),
    Case(
        "auto-never-takes-explicit-cpu",
        ["2-1"],
        {0: "0", 1: "2", 2: "1", 3: "3"},
        annotations={POLICY: "auto"},
    ),
    Case(
        "auto-runs-out-of-cpus",
        ["0-0"],
        {0: "0", 1: "1"},
        ["no free host CPU left for vCPUs 2-3; they float"],
        host="0-1",
        annotations={POLICY: "auto"},
    ),
    Case(
        "auto-guest-siblings-on-smt-siblings",
        [],
        {0: "0", 1: "8", 2: "1", 3: "9"},
        annotations={POLICY: "auto"},
        host="0-15",
        domain={"cores": 2, "threads": 2},
        sysfs=SMT_HOST,
    ),
    Case(
        "auto-lone-vcpus-on-whole-cores",
        [],
        {0: "0", 1: "1", 2: "2", 3: "3"},
        annotations={POLICY: "auto"},
        host="0-15",
        sysfs=SMT_HOST,
    ),
    Case(
        # Guest socket 1 skips free CPU 3 so that it stays within node 1.
        "auto-socket-stays-in-numa-node",
        ["0-0"],
        {0: "0", 1: "1", 2: "2", 3: "4", 4: "5", 5: "6"},
        ["the pins span host NUMA nodes 0-1"],
        annotations={POLICY: "auto"},
        vcpus=6,
        host="0-7",
        domain={"sockets": 2, "cores": 3},
        sysfs={"online": "0-7", "nodes": {0: "0-3", 1: "4-7"}},
    ),
    # Advisories about the host topology.
    Case(
        "guest-siblings-split",
        ["0-0", "1-1"],
        {0: "0", 1: "1"},
        ["vCPUs 0-1 are thread siblings in the guest, but host CPUs 0-1 are not SMT siblings"],
        host="0-15",
        domain={"cores": 2, "threads": 2},
        sysfs=SMT_HOST,
    ),
    Case(
        "guest-siblings-kept",
        ["0-0", "1-8"],
        {0: "0", 1: "8"},
        host="0-15",
        domain={"cores": 2, "threads": 2},
        sysfs=SMT_HOST,
    ),
    Case(
        "pins-span-numa-nodes",
        ["0-0", "1-4"],
        {0: "0", 1: "4"},
        ["the pins span host NUMA nodes 0-1"],
        host="0-15",
        sysfs=SMT_HOST,
    ),
    Case("shared-host-cpu", ["0-3", "1-3"], {0: "3", 1: "3"}, ["vCPUs 0-1 share host CPU 3"]),
    # KubeVirt's own pinning.
    Case(
        "dedicated-repin-within-set",
        ["0-5", "1-9"],
        {0: "5", 1: "5"},
        ["impossible to pin 9 on host where we have only 2 (4-5)", "vCPUs 0-1 share host CPU 5"],
        vcpus=2,
        host="0-63",
        cpu={"dedicatedCpuPlacement": True},
        domain={"cputune": '<vcpupin vcpu="0" cpuset="4"></vcpupin>\n<vcpupin vcpu="1" cpuset="5"></vcpupin>'},
    ),
    Case(
        "hotplug-offline-vcpu-pinned",
        ["6-3"],
        {6: "3"},
        vcpus=8,
        domain={"sockets": 8, "cores": 1, "enabled_vcpus": 4},
    ),
    Case(
        "migration-target-warns",
        ["0-2", "1-12"],
        {0: "2"},
        [
            "impossible to pin 12 on host where we have only 8",
            "live migration target: the pin list names host CPUs 12, which this host does not have (available: 0-7)",
        ],
        status={"migrationState": {"targetNode": "node-b", "sourceNode": "node-a"}},
    ),
    Case(
        "completed-migration-is-not-target",
        ["0-2"],
        {0: "2"},
        status={"migrationState": {"completed": True}},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_rule(case: Case, tmp_path: pathlib.Path) -> None:
    outcome = run(case, tmp_path)

    assert pins_of(outcome.domain_xml) == case.expected_pins
    assert [problem.message for problem in outcome.problems] == case.messages


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_rule_output_idempotent(case: Case, tmp_path: pathlib.Path) -> None:
    once = run(case, tmp_path / "first").domain_xml
    document = make_vmi(case.pins, cores=case.vcpus, annotations=case.annotations, cpu=case.cpu)
    sysfs_root = make_sysfs(tmp_path / "second", **case.sysfs) if case.sysfs else tmp_path / "no-sysfs"
    host = HostCpuSource(override=parse_cpuset(case.host), sysfs_cpu_root=sysfs_root)

    again = rewrite_domain(once, parse_vmi_json(json.dumps(document).encode()), host)

    assert again.domain_xml == once


def test_strict_rejects_with_every_problem(tmp_path: pathlib.Path) -> None:
    case = Case("strict", ["0-9", "7-1", "-1-1", "1-2"], {}, annotations={POLICY: "strict"})

    with pytest.raises(StrictPolicyViolation) as raised:
        run(case, tmp_path)

    assert str(raised.value) == (
        "the strict pinning policy rejects the pin list: "
        "impossible to pin 7 on VM where we have only 4 (entry '7-1'); "
        "impossible to pin negative number (entry '-1-1'); "
        "impossible to pin 9 on host where we have only 8 (entry '0-9')"
    )
    assert len(raised.value.problems) == 3


def test_strict_message_is_bounded(tmp_path: pathlib.Path) -> None:
    case = Case("strict-flood", [f"{vcpu}-1" for vcpu in range(10, 5010)], {}, annotations={POLICY: "strict"})

    with pytest.raises(StrictPolicyViolation) as raised:
        run(case, tmp_path)

    assert len(str(raised.value)) < 4200
    assert str(raised.value).endswith("more (see the hook sidecar's log)")


def test_auto_is_deterministic(tmp_path: pathlib.Path) -> None:
    case = Case("auto", ["3-5"], {}, vcpus=6, host="0-15", annotations={POLICY: "auto"}, sysfs=SMT_HOST)

    first = run(case, tmp_path / "a").domain_xml
    second = run(case, tmp_path / "b").domain_xml

    assert first == second


def test_auto_uses_only_free_available_cpus(tmp_path: pathlib.Path) -> None:
    case = Case(
        "auto",
        ["0-4", "1-5"],
        {},
        vcpus=6,
        host="2-7",
        annotations={POLICY: "auto", EMULATOR_PIN: "2"},
    )

    pins = pins_of(run(case, tmp_path).domain_xml)

    assert pins == {0: "4", 1: "5", 2: "3", 3: "6", 4: "7"}


def test_annotation_of_wrong_shape_names_it(tmp_path: pathlib.Path) -> None:
    document = make_vmi(None)
    document["metadata"]["annotations"]["cpu-pinning.vm.kubevirt.io/pinning"] = '{"0": 2}'

    with pytest.raises(InvalidInput, match=r"cpu-pinning.vm.kubevirt.io/pinning must be a JSON list of strings"):
        parse_vmi_json(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("annotations", "cputune", "emulator", "iothreads", "messages"),
    [
        ({EMULATOR_PIN: "6-7"}, "", "6-7", {}, []),
        ({IOTHREAD_PIN: '["1:0-1", "2:2"]'}, "", None, {1: "0-1", 2: "2"}, []),
        (
            {IOTHREAD_PIN: '["3:0"]'},
            "",
            None,
            {},
            ["impossible to pin IO thread 3 on VM where we have only 2 IO threads"],
        ),
        (
            {EMULATOR_PIN: "9", IOTHREAD_PIN: '["1:8"]'},
            "",
            None,
            {},
            [
                "impossible to pin 9 on host where we have only 8",
                "impossible to pin 8 on host where we have only 8",
            ],
        ),
        (
            {IOTHREAD_PIN: '["one:1"]'},
            "",
            None,
            {},
            ['invalid iothreadpin entry \'one:1\': expected "IOTHREAD:CPUSET" such as "1:0-1"'],
        ),
        (
            {},
            '<emulatorpin cpuset="5"></emulatorpin>\n<iothreadpin iothread="1" cpuset="4"></iothreadpin>',
            "5",
            {1: "4"},
            [],
        ),
    ],
    ids=[
        "emulatorpin",
        "iothreadpin",
        "iothread-missing",
        "cpus-not-available",
        "iothread-entry-malformed",
        "existing-kept",
    ],
)
def test_emulator_and_iothread_pins(
    tmp_path: pathlib.Path,
    annotations: dict[str, str],
    cputune: str,
    emulator: str | None,
    iothreads: dict[int, str],
    messages: list[str],
) -> None:
    case = Case("threads", ["0-0"], {}, annotations=annotations, domain={"iothreads": 2, "cputune": cputune})

    outcome = run(case, tmp_path)
    root = etree.fromstring(outcome.domain_xml)
    emulator_element = root.find("cputune/emulatorpin")

    assert (emulator_element.get("cpuset") if emulator_element is not None else None) == emulator
    assert {int(e.get("iothread")): e.get("cpuset") for e in root.iterfind("cputune/iothreadpin")} == iothreads
    assert [problem.message for problem in outcome.problems] == messages


def test_emulator_pin_alone_is_applied(tmp_path: pathlib.Path) -> None:
    case = Case("emulator-only", None, {}, annotations={EMULATOR_PIN: "7"})

    root = etree.fromstring(run(case, tmp_path).domain_xml)

    assert root.find("cputune/emulatorpin").get("cpuset") == "7"


def test_floating_affinity_is_available_set(tmp_path: pathlib.Path) -> None:
    case = Case("partial", ["0-2"], {}, host="0-1,4-5")

    plan = run(case, tmp_path).plan

    assert plan is not None
    assert format_cpuset(plan.affinity(1)) == "0-1,4-5"


@pytest.mark.parametrize(
    ("annotations", "cpu", "cputune", "hint_end"),
    [
        ({}, {}, "", "vCPU 0 floats over 0-7; pin it to one of 0-7"),
        ({POLICY: "auto"}, {}, "", "vCPU 0 gets a free host CPU from the auto policy; pin it to one of 0-7"),
        (
            {},
            {"dedicatedCpuPlacement": True},
            '<vcpupin vcpu="0" cpuset="4"></vcpupin>\n<vcpupin vcpu="1" cpuset="5"></vcpupin>',
            "vCPU 0 keeps its pin 4; pin it to one of 4-5",
        ),
    ],
    ids=["float", "auto", "dedicated"],
)
def test_rejected_entry_hint_follows_policy(
    tmp_path: pathlib.Path, annotations: dict[str, str], cpu: dict[str, Any], cputune: str, hint_end: str
) -> None:
    case = Case("hint", ["0-9"], {}, vcpus=2, annotations=annotations, cpu=cpu, domain={"cputune": cputune})

    problem = next(iter(run(case, tmp_path).problems))

    assert problem.hint.endswith(hint_end)


def test_rejected_vmi_carries_identity() -> None:
    document = make_vmi(None, annotations={"cpu-pinning.vm.kubevirt.io/pinning": "nope"})

    with pytest.raises(InvalidInput) as raised:
        parse_vmi_json(json.dumps(document).encode())

    assert raised.value.fields == {
        "namespace": "default",
        "name": "fedora-pinned",
        "uid": "3b0e9ae2-55a5-4a7c-9d62-0c1f6a1c4e21",
    }
