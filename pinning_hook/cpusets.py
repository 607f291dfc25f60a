"""libvirt's cpuset syntax: parsing and formatting sets of host CPU ids.

A cpuset is a comma-separated list of CPU ids, `a-b` ranges and `^n`
exclusions, applied left to right: `0-3,^2` is {0, 1, 3}. This is the syntax
of `<vcpupin cpuset=...>`, of sysfs CPU lists and of `virsh vcpupin`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Recent libvirt releases size every CPU mask to 16384 bits, and older ones
# to 1024 (VIR_DOMAIN_CPUMASK_LEN in domain_conf.h). So no cpuset that
# libvirt accepts names a larger id.
MAX_CPU_ID = 16383
# A vCPU count beyond the size of libvirt's CPU masks is no real VM, and
# planning millions of vCPUs would stall the call.
MAX_VCPUS = MAX_CPU_ID + 1

# With keep_above_limit, the longest number accepted; int() itself stops at 4300 digits.
_MAX_DIGITS = 64

# Only ASCII digits: Python's int() would also accept "٣" (Arabic-Indic
# three), which libvirt rejects.
_ITEM = re.compile(r"(\^)?([0-9]+)(?:-([0-9]+))?")


class CpusetSyntaxError(ValueError):
    """A cpuset string does not follow libvirt's syntax."""


def parse_cpuset(text: str, *, keep_above_limit: bool = False) -> frozenset[int]:
    """Parse a libvirt cpuset such as `0-3,^2` into the set of CPU ids.

    Raises CpusetSyntaxError, naming the offending item, for anything
    libvirt would reject: empty items, non-ASCII digits, a range whose end
    comes before its start, or an id above MAX_CPU_ID. With
    `keep_above_limit`, ids above MAX_CPU_ID are accepted instead, so that
    the caller can report them as missing host CPUs, but each item keeps
    only the smallest of them: `0-99999` yields 0-16384, not 100000 ids.
    """
    stripped = text.strip()
    if not stripped:
        raise CpusetSyntaxError("the cpuset is empty")

    cpus: set[int] = set()
    for raw_item in stripped.split(","):
        item = raw_item.strip()
        match = _ITEM.fullmatch(item)
        if match is None:
            raise CpusetSyntaxError(f"{item!r} is not a CPU id, an a-b range or a ^n exclusion")

        exclude, start_text, end_text = match.groups()
        # Checked on the digits, before int(), which rejects numbers of
        # more than 4300 digits with a ValueError of its own.
        digits = max(len(start_text), len(end_text or ""))
        if digits > (_MAX_DIGITS if keep_above_limit else len(str(MAX_CPU_ID))):
            raise CpusetSyntaxError(f"{item[:40]!r}: CPU ids above {MAX_CPU_ID} are beyond libvirt's limit")
        start = int(start_text)
        end = int(end_text) if end_text is not None else start
        if exclude and end_text is not None:
            raise CpusetSyntaxError(f"{item!r}: an exclusion takes a single CPU id, not a range")
        if end < start:
            raise CpusetSyntaxError(f"{item!r}: the range ends before it starts")
        if end > MAX_CPU_ID and not keep_above_limit:
            raise CpusetSyntaxError(f"{item!r}: CPU ids above {MAX_CPU_ID} are beyond libvirt's limit")

        if exclude:
            cpus.discard(start)
            continue
        cpus.update(range(start, min(end, MAX_CPU_ID) + 1))
        if end > MAX_CPU_ID:
            cpus.add(max(start, MAX_CPU_ID + 1))
    return frozenset(cpus)


def format_cpuset(cpus: Iterable[int]) -> str:
    """Format CPU ids as libvirt and virsh print them: `0-1,4-5`."""
    if isinstance(cpus, frozenset) and len(cpus) == 1:
        # A pin to one host CPU, the common case: skip the sort and the scan.
        (cpu,) = cpus
        return str(cpu)

    ordered = sorted(set(cpus))
    parts: list[str] = []
    index = 0
    while index < len(ordered):
        start = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == ordered[index] + 1:
            index += 1
        end = ordered[index]
        parts.append(str(start) if start == end else f"{start}-{end}")
        index += 1
    return ",".join(parts)
