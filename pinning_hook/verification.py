"""Comparing a running domain's vCPU affinities with the plan.

The plan is what `rewrite.rewrite_domain` computes for the VMI, exactly as
the sidecar computes it in OnDefineDomain. A vCPU's expected affinity is its
pin, or every available host CPU when it floats. The live affinities come
from `virsh vcpupin` (`vcpupin_table.parse_table`) or straight from libvirt
(`libvirtpins.read_live_affinities`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pinning_hook.cpusets import format_cpuset
from pinning_hook.planning import Plan


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One vCPU whose live affinity differs from the plan."""

    vcpu: int
    # None when the domain has no such vCPU.
    expected: frozenset[int] | None
    # None when the live affinities do not list this vCPU.
    actual: frozenset[int] | None

    def describe(self) -> str:
        """Describe the mismatch on one line, such as `vCPU 1: expected 3, actual 0-3`."""
        expected = format_cpuset(self.expected) if self.expected is not None else "(the domain has no such vCPU)"
        actual = format_cpuset(self.actual) if self.actual is not None else "(not listed)"
        return f"vCPU {self.vcpu}: expected {expected}, actual {actual}"


def find_mismatches(plan: Plan, live: Mapping[int, frozenset[int]]) -> list[Mismatch]:
    """Compare each vCPU's live affinity with `plan.affinity`, returning the differences in vCPU order.

    Every vCPU of the plan must be listed in `live`, and `live` must list
    no vCPU beyond the plan's count.
    """
    mismatches = []
    for vcpu in sorted(set(range(plan.vcpu_count)) | set(live)):
        expected = plan.affinity(vcpu) if vcpu < plan.vcpu_count else None
        actual = live.get(vcpu)
        if expected != actual:
            mismatches.append(Mismatch(vcpu=vcpu, expected=expected, actual=actual))
    return mismatches
