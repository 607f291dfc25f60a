"""Comparing live vCPU affinities with the plan, one line per mismatching vCPU."""

from __future__ import annotations

import pathlib

import pytest
from conftest import GOLDEN_DIR, make_vmi

from pinning_hook.host import HostCpuSource
from pinning_hook.planning import Plan
from pinning_hook.rewrite import rewrite_domain
from pinning_hook.verification import find_mismatches
from pinning_hook.vmi import read_vmi

EIGHT_CPUS = frozenset(range(8))
EIGHT_CPU_HOST = HostCpuSource(override=EIGHT_CPUS, sysfs_cpu_root=pathlib.Path("/nonexistent"))
FOUR_CPUS = frozenset(range(4))
# vCPU 0 pinned to CPU 2, vCPU 1 floating over CPUs 0-3.
PLAN = Plan(vcpu_count=2, available=FOUR_CPUS, pins={0: frozenset({2})})


@pytest.mark.parametrize(
    ("live", "lines"),
    [
        ({0: frozenset({2}), 1: FOUR_CPUS}, []),
        ({0: frozenset({3}), 1: FOUR_CPUS}, ["vCPU 0: expected 2, actual 3"]),
        ({0: frozenset({2}), 1: frozenset({3})}, ["vCPU 1: expected 0-3, actual 3"]),
        ({0: frozenset({2})}, ["vCPU 1: expected 0-3, actual (not listed)"]),
        (
            {0: frozenset({2}), 1: FOUR_CPUS, 2: frozenset({1})},
            ["vCPU 2: expected (the domain has no such vCPU), actual 1"],
        ),
        (
            {0: frozenset({0, 1}), 1: frozenset({2})},
            ["vCPU 0: expected 2, actual 0-1", "vCPU 1: expected 0-3, actual 2"],
        ),
    ],
    ids=["all-match", "pinned-elsewhere", "floating-vcpu-pinned", "vcpu-not-listed", "extra-vcpu", "both-differ"],
)
def test_mismatches_described_per_vcpu(live: dict[int, frozenset[int]], lines: list[str]) -> None:
    assert [mismatch.describe() for mismatch in find_mismatches(PLAN, live)] == lines


@pytest.mark.parametrize(
    ("domain_file", "pins", "cpu"),
    [
        ("launcher-dedicated.xml", ["0-5", "1-6"], {"dedicatedCpuPlacement": True}),
        ("launcher-4vcpu.xml", ["0-2", "1-9"], {}),
    ],
    ids=["dedicated", "shared"],
)
def test_hooked_domain_gives_same_plan(domain_file: str, pins: list[str], cpu: dict[str, object]) -> None:
    # `verify --domain-xml` may get `virsh dumpxml` output, which the hook has already rewritten.
    vmi = read_vmi(make_vmi(pins, cores=2, cpu=cpu))
    launcher = rewrite_domain((GOLDEN_DIR / domain_file).read_bytes(), vmi, EIGHT_CPU_HOST)
    hooked = rewrite_domain(launcher.domain_xml, vmi, EIGHT_CPU_HOST)

    assert launcher.plan is not None
    assert hooked.plan is not None
    assert find_mismatches(hooked.plan, affinities(launcher.plan)) == []


def affinities(plan: Plan) -> dict[int, frozenset[int]]:
    return {vcpu: plan.affinity(vcpu) for vcpu in range(plan.vcpu_count)}
