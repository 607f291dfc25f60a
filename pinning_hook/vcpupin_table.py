"""The `VCPU   CPU Affinity` table, as `virsh vcpupin DOMAIN` prints it.

`plan` prints the planned affinities in this shape so that they can be
compared line by line with what virsh shows on the running domain, and
`verify` parses what virsh printed back into vCPU -> host CPUs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pinning_hook.cpusets import CpusetSyntaxError, format_cpuset, parse_cpuset
from pinning_hook.errors import InvalidInput

HEADER = " VCPU   CPU Affinity"
RULE = "-" * 22

# A row as virsh prints it (libvirt 5.x and later): the vCPU number, then
# its cpuset, separated by spaces.
_ROW = re.compile(r"\s*([0-9]+)\s+(\S+)\s*")
_RULE_LINE = re.compile(r"-+")


class TableSyntaxError(InvalidInput):
    """Text that is not the table `virsh vcpupin DOMAIN` prints."""


def format_table(affinities: Mapping[int, frozenset[int]]) -> str:
    """Format vCPU -> host CPUs as virsh does, one row per vCPU in order."""
    rows = [HEADER, RULE]
    for vcpu in sorted(affinities):
        rows.append(f" {vcpu:<6} {format_cpuset(affinities[vcpu])}")
    return "\n".join(rows) + "\n"


def parse_table(text: str) -> dict[int, frozenset[int]]:
    """Parse the output of `virsh vcpupin DOMAIN` into vCPU -> host CPUs.

    Blank lines are skipped. Raises TableSyntaxError, naming the line by
    its number and text, for anything else that is not the header, the
    rule below it or a row.
    """
    lines = [(number, line.rstrip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise TableSyntaxError(
            "the virsh vcpupin output is empty; run `virsh vcpupin DOMAIN` in the compute container and pipe its output"
        )

    expected_header = HEADER.split()
    number, line = lines[0]
    if line.split() != expected_header:
        raise TableSyntaxError(_unexpected(number, line, f"the header {HEADER.strip()!r}"))
    if len(lines) < 2:
        raise TableSyntaxError("the virsh vcpupin output ends after its header")
    number, line = lines[1]
    if _RULE_LINE.fullmatch(line.strip()) is None:
        raise TableSyntaxError(_unexpected(number, line, "a line of dashes below the header"))

    affinities: dict[int, frozenset[int]] = {}
    for number, line in lines[2:]:
        row = _ROW.fullmatch(line)
        if row is None:
            raise TableSyntaxError(_unexpected(number, line, "a row such as ' 0      2'"))
        vcpu = int(row.group(1))
        try:
            cpus = parse_cpuset(row.group(2))
        except CpusetSyntaxError as error:
            raise TableSyntaxError(f"line {number} of the virsh vcpupin output, {line!r:.80}: {error}") from error
        if vcpu in affinities:
            raise TableSyntaxError(f"line {number} of the virsh vcpupin output lists vCPU {vcpu} a second time")
        affinities[vcpu] = cpus

    if not affinities:
        raise TableSyntaxError("the virsh vcpupin output has a header but no vCPU rows")
    return affinities


def _unexpected(number: int, line: str, expected: str) -> str:
    return f"line {number} of the virsh vcpupin output is {line!r:.80}, expected {expected}"
