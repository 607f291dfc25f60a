"""Pins for QEMU's emulator threads and IO threads, from the VMI's annotations.

They follow the vCPU rules: the CPUs must be available, and an IO thread
must exist in the domain. A rejected pin is dropped with a Problem, and the
domain's existing `<emulatorpin>` or `<iothreadpin>` stays.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

from pinning_hook.cpusets import CpusetSyntaxError, format_cpuset, parse_cpuset
from pinning_hook.pinlist import quote
from pinning_hook.planning import describe_cpus
from pinning_hook.problems import Problem
from pinning_hook.vmi import EMULATOR_PIN_ANNOTATION, IOTHREAD_PIN_ANNOTATION

_IOTHREAD_ENTRY = re.compile(r"([0-9]{1,9}):(.+)", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class ThreadPins:
    """The emulator and IO thread pins to write, with the problems found."""

    emulator: frozenset[int] | None
    iothreads: Mapping[int, frozenset[int]]
    problems: tuple[Problem, ...] = ()


def plan_thread_pins(
    emulator_text: str | None,
    iothread_entries: Iterable[str] | None,
    *,
    available: frozenset[int],
    iothread_ids: frozenset[int],
    existing_emulator: frozenset[int] | None,
    existing_iothreads: Mapping[int, frozenset[int]],
) -> ThreadPins:
    """Check the requested pins and merge them over the domain's existing ones."""
    problems: list[Problem] = []
    emulator = existing_emulator
    iothreads = dict(existing_iothreads)

    if emulator_text is not None:
        cpus = _checked_cpuset(
            emulator_text,
            f"the annotation {EMULATOR_PIN_ANNOTATION}",
            available,
            problems,
            entry=f"emulatorpin {emulator_text}",
        )
        if cpus is not None:
            emulator = cpus

    for raw in iothread_entries or ():
        match = _IOTHREAD_ENTRY.fullmatch(raw.strip())
        if match is None:
            problems.append(
                Problem(
                    code="invalid-entry",
                    message=f'invalid iothreadpin entry {quote(raw)}: expected "IOTHREAD:CPUSET" such as "1:0-1"',
                    hint=f"fix the annotation {IOTHREAD_PIN_ANNOTATION}; IO threads count from 1",
                    entry=raw,
                )
            )
            continue

        iothread = int(match.group(1))
        if iothread not in iothread_ids:
            problems.append(
                Problem(
                    code="iothread-not-found",
                    message=f"impossible to pin IO thread {iothread} on VM where we have only "
                    f"{_describe_iothreads(iothread_ids)}",
                    hint=f"entry {quote(raw)} is ignored; IO threads count from 1, and this domain has "
                    f"{format_cpuset(iothread_ids) or 'none'}",
                    entry=raw,
                )
            )
            continue
        cpus = _checked_cpuset(
            match.group(2), f"iothreadpin entry {quote(raw)}", available, problems, entry=f"iothreadpin {raw}"
        )
        if cpus is not None:
            iothreads[iothread] = cpus

    return ThreadPins(emulator=emulator, iothreads=iothreads, problems=tuple(problems))


def _checked_cpuset(
    text: str, where: str, available: frozenset[int], problems: list[Problem], *, entry: str
) -> frozenset[int] | None:
    """Parse a cpuset and check it against the available CPUs, appending any Problem."""
    try:
        cpus = parse_cpuset(text, keep_above_limit=True)
    except CpusetSyntaxError as error:
        problems.append(
            Problem(
                code="invalid-entry",
                message=f"invalid cpuset in {where}: {error}",
                hint="write a libvirt cpuset such as '0-1' or '0-3,^2'",
                entry=entry,
            )
        )
        return None

    if not cpus:
        problems.append(
            Problem(
                code="empty-cpuset",
                message=f"invalid cpuset in {where}: its exclusions leave no host CPU",
                hint="name at least one host CPU that is not excluded",
                entry=entry,
            )
        )
        return None

    missing = cpus - available
    if missing:
        problems.append(
            Problem(
                code="cpu-not-available",
                message=f"impossible to pin {min(missing)} on host where we have only {describe_cpus(available)}",
                hint=f"{where} is ignored; use CPUs from {format_cpuset(available)}",
                entry=entry,
            )
        )
        return None
    return cpus


def _describe_iothreads(ids: frozenset[int]) -> str:
    if not ids:
        return "0 IO threads"
    if ids == frozenset(range(1, len(ids) + 1)):
        return f"{len(ids)} IO threads"
    return f"{len(ids)} IO threads ({format_cpuset(ids)})"
