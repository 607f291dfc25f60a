"""One OnDefineDomain call, from the request's bytes to the response's bytes.

This is the pure core that the gRPC server and the CLI share: read the VMI,
parse the pin list, plan against the host CPUs, rewrite `<cputune>`. It does
no I/O apart from calling `host_cpus` and logs nothing; the caller decodes
the VMI (`vmi.parse_vmi_json`) and logs the problems returned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from pinning_hook import domainxml, pinlist, planning
from pinning_hook.problems import Problem
from pinning_hook.vmi import Vmi


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The rewritten domain and how it was reached."""

    domain_xml: bytes
    vmi: Vmi
    # None when the VMI has no pin list and the domain was passed through.
    plan: planning.Plan | None
    problems: tuple[Problem, ...]
    # Whether the output differs from the input; when it does not, the
    # output is the input's very bytes.
    changed: bool = False


def rewrite_domain(domain_xml: bytes, vmi: Vmi, host_cpus: Callable[[], frozenset[int]]) -> Outcome:
    """Pin the domain's vCPUs as the VMI's pin list requests.

    Without a pin list the input bytes are returned unchanged. Raises
    InvalidInput for a malformed domain, and HostCpuError when the host
    CPUs cannot be read. Problems with single entries never raise.
    """
    if vmi.pin_list is None:
        return Outcome(domain_xml=domain_xml, vmi=vmi, plan=None, problems=vmi.problems)

    tree = domainxml.parse_domain(domain_xml)
    existing = domainxml.read_vcpu_pins(tree)
    plan = _plan(vmi, vcpu_count=domainxml.read_vcpu_count(tree), existing=existing, host_cpus=host_cpus)
    problems = (*vmi.problems, *plan.problems)

    # Nothing to change: hand back the caller's bytes, not a re-serialisation.
    if plan.pins == existing:
        return Outcome(domain_xml=domain_xml, vmi=vmi, plan=plan, problems=problems)

    domainxml.write_vcpu_pins(tree, plan.pins)
    return Outcome(
        domain_xml=domainxml.serialize_domain(tree),
        vmi=vmi,
        plan=plan,
        problems=problems,
        changed=True,
    )


def _plan(
    vmi: Vmi,
    *,
    vcpu_count: int,
    existing: dict[int, frozenset[int]],
    host_cpus: Callable[[], frozenset[int]],
) -> planning.Plan:
    if vmi.dedicated_cpu_placement and existing:
        # With dedicatedCpuPlacement, KubeVirt has already pinned every vCPU
        # to the compute container's exclusive CPUs. Those pins are the
        # sidecar's only view of that container's cpuset.
        available = frozenset().union(*existing.values())
    else:
        available = host_cpus()

    entries, parse_problems = pinlist.parse_pin_list(vmi.pin_list or ())
    plan = planning.plan_pins(entries, vcpu_count=vcpu_count, available=available, existing_pins=existing)
    return dataclasses.replace(plan, problems=(*parse_problems, *plan.problems))
