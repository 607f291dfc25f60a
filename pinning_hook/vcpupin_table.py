"""The `VCPU   CPU Affinity` table, as `virsh vcpupin DOMAIN` prints it.

`plan` prints the planned affinities in this shape so that they can be
compared line by line with what virsh shows on the running domain.
"""

from __future__ import annotations

from collections.abc import Mapping

from pinning_hook.cpusets import format_cpuset

HEADER = " VCPU   CPU Affinity"
RULE = "-" * 22


def format_table(affinities: Mapping[int, frozenset[int]]) -> str:
    """Format vCPU -> host CPUs as virsh does, one row per vCPU in order."""
    rows = [HEADER, RULE]
    for vcpu in sorted(affinities):
        rows.append(f" {vcpu:<6} {format_cpuset(affinities[vcpu])}")
    return "\n".join(rows) + "\n"
