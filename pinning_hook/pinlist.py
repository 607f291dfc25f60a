"""The user's pin list: its entry forms and how they are parsed.

An entry is either `V-P`, which pins vCPU V to host CPU P, or `V:CPUSET`,
which pins vCPU V to a libvirt cpuset such as `0-3,^2`. Numbers count from 0
and are ASCII decimal. Parsing checks only the form of each entry: whether
the vCPU and the host CPUs exist is for `planning` to decide.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from pinning_hook.cpusets import CpusetSyntaxError, parse_cpuset
from pinning_hook.problems import Problem, ProblemList

# Longer entries cannot be valid for any host libvirt supports, and the
# limit keeps int() away from numbers of thousands of digits.
MAX_ENTRY_LENGTH = 4096
# Maximum digits in a vCPU or host CPU number. Longer numbers name no real
# CPU and would only make the messages that quote them unreadable.
MAX_NUMBER_DIGITS = 64
# Upper bound on the host CPU ids that one pin list may name in total,
# counted over its entries. It caps the memory a hostile list can take,
# and is far above a real list: 1024 vCPUs pinned to 64 CPUs each is 65536.
MAX_PIN_LIST_CPU_IDS = 65536

# The minus signs are matched only so that "-1-2" and "1--2" get the
# negative-number message rather than the generic one.
_SINGLE_CPU = re.compile(r"(-?[0-9]+)-(-?[0-9]+)")
# The common case, "V-P" with short numbers and no surrounding space, which
# needs none of the checks below.
_PLAIN_SINGLE_CPU = re.compile(r"([0-9]{1,9})-([0-9]{1,9})")
_CPUSET = re.compile(r"(-?[0-9]+):(.*)", re.DOTALL)
_NEGATIVE_CPUSET = re.compile(r"\s*-[0-9]")

ACCEPTED_FORMS = '"V-P" (vCPU V on host CPU P, such as "0-2") or "V:CPUSET" (such as "1:0-3,^2")'


@dataclasses.dataclass(frozen=True, slots=True)
class PinEntry:
    """One well-formed entry: a vCPU and the host CPUs it may run on."""

    text: str
    vcpu: int
    cpus: frozenset[int]


def parse_pin_list(entries: Iterable[str], *, vcpu_count: int | None = None) -> tuple[list[PinEntry], ProblemList]:
    """Parse the entries in order and return the valid ones with the problems.

    When an entry names a vCPU that an earlier entry named too, the later
    entry replaces the earlier one, so each vCPU appears at most once in
    the result. With `vcpu_count`, entries for vCPUs the domain lacks are
    rejected here, so that a flood of them costs no memory beyond its
    problems.
    """
    by_vcpu: dict[int, PinEntry] = {}
    problems = ProblemList()
    cpu_ids = 0

    for raw in entries:
        entry = parse_entry(raw)
        if isinstance(entry, Problem):
            problems.append(entry)
            continue
        if vcpu_count is not None and entry.vcpu >= vcpu_count:
            problems.append(vcpu_out_of_range(entry, vcpu_count))
            continue

        cpu_ids += len(entry.cpus)
        if cpu_ids > MAX_PIN_LIST_CPU_IDS:
            problems.append(
                Problem(
                    code="pin-list-too-large",
                    message=f"the pin list names more than {MAX_PIN_LIST_CPU_IDS} host CPU ids in total; "
                    f"entries from {quote(raw)} on are ignored",
                    hint="pin each vCPU to a single host CPU or to a small cpuset",
                    entry=raw,
                )
            )
            break

        earlier = by_vcpu.pop(entry.vcpu, None)
        if earlier is not None:
            problems.append(
                Problem(
                    code="duplicate-vcpu",
                    message=(f"vCPU {entry.vcpu} is listed twice: {quote(entry.text)} replaces {quote(earlier.text)}"),
                    hint=f"remove one of the two entries for vCPU {entry.vcpu}",
                    entry=entry.text,
                    vcpu=entry.vcpu,
                )
            )
        by_vcpu[entry.vcpu] = entry

    ordered = sorted(by_vcpu.values(), key=lambda pin: pin.vcpu)
    return ordered, problems


def parse_entry(raw: str) -> PinEntry | Problem:
    """Parse one entry into a PinEntry, or return the Problem that rejects it."""
    plain = _PLAIN_SINGLE_CPU.fullmatch(raw)
    if plain is not None:
        return PinEntry(raw, int(plain[1]), frozenset((int(plain[2]),)))

    text = raw.strip()
    if len(text) > MAX_ENTRY_LENGTH:
        return _invalid(raw, f"the entry is longer than {MAX_ENTRY_LENGTH} characters")

    single = _SINGLE_CPU.fullmatch(text)
    if single is not None:
        vcpu_text, cpu_text = single.groups()
        # The most common form, run once per pin: the groups are never
        # empty, and positional arguments build the frozen dataclass faster.
        if vcpu_text[0] == "-" or cpu_text[0] == "-":
            return _negative(raw)
        if max(len(vcpu_text), len(cpu_text)) > MAX_NUMBER_DIGITS:
            return _invalid(raw, f"a number has more than {MAX_NUMBER_DIGITS} digits")
        return PinEntry(text, int(vcpu_text), frozenset({int(cpu_text)}))

    with_set = _CPUSET.fullmatch(text)
    if with_set is not None:
        vcpu_text, cpuset_text = with_set.groups()
        if vcpu_text.startswith("-") or _NEGATIVE_CPUSET.match(cpuset_text):
            return _negative(raw)
        if len(vcpu_text) > MAX_NUMBER_DIGITS:
            return _invalid(raw, f"a number has more than {MAX_NUMBER_DIGITS} digits")
        try:
            cpus = parse_cpuset(cpuset_text, keep_above_limit=True)
        except CpusetSyntaxError as error:
            return _invalid(raw, str(error))
        vcpu = int(vcpu_text)
        if not cpus:
            return Problem(
                code="empty-cpuset",
                message=f"invalid pin entry {quote(raw)}: its exclusions leave no host CPU",
                hint=f"vCPU {vcpu} floats; name at least one host CPU that is not excluded",
                entry=raw,
                vcpu=vcpu,
            )
        return PinEntry(text=text, vcpu=vcpu, cpus=cpus)

    return _invalid(raw, "it is in neither accepted form")


def vcpu_out_of_range(entry: PinEntry, vcpu_count: int) -> Problem:
    """Return the Problem for an entry that names a vCPU the domain does not have."""
    return Problem(
        code="vcpu-out-of-range",
        message=f"impossible to pin {entry.vcpu} on VM where we have only {vcpu_count}",
        hint=f"entry {quote(entry.text)} is ignored; this VM's vCPUs are 0-{vcpu_count - 1}",
        entry=entry.text,
        vcpu=entry.vcpu,
    )


def quote(entry: str, limit: int = 40) -> str:
    """Quote an entry for a message, cut to `limit` characters so that a
    huge entry cannot flood the log."""
    if len(entry) <= limit:
        return repr(entry)
    return repr(entry[:limit]) + f"... ({len(entry)} characters)"


def _negative(raw: str) -> Problem:
    return Problem(
        code="negative-number",
        message="impossible to pin negative number",
        hint=f"entry {quote(raw)} is ignored; vCPU and host CPU numbers count from 0",
        entry=raw,
    )


def _invalid(raw: str, reason: str) -> Problem:
    return Problem(
        code="invalid-entry",
        message=f"invalid pin entry {quote(raw)}: {reason}",
        hint=f"write each entry as {ACCEPTED_FORMS}",
        entry=raw,
    )
