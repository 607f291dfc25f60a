"""One OnDefineDomain call, from the request's bytes to the response's bytes.

This is the pure core that the gRPC server and the CLI share: read the
domain's current pins, plan the VMI's pin list against the host, apply the
policy, and rewrite `<cputune>`. It logs nothing; the caller decodes the VMI
(`vmi.parse_vmi_json`) and logs the problems returned.
"""

from __future__ import annotations

import dataclasses

from pinning_hook import advisories, domainxml, pinlist, planning, policies, threadpins
from pinning_hook.cpusets import format_cpuset
from pinning_hook.errors import StrictPolicyViolation
from pinning_hook.host import HostCpuSource
from pinning_hook.policies import Policy
from pinning_hook.problems import Problem, ProblemList
from pinning_hook.vmi import Vmi


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The rewritten domain and how it was reached."""

    domain_xml: bytes
    vmi: Vmi
    # None when the VMI requests no pin and the domain was passed through.
    plan: planning.Plan | None
    problems: ProblemList
    policy: Policy = Policy.FLOAT
    # Whether the output differs from the input; when it does not, the
    # output is the input's very bytes.
    changed: bool = False


def rewrite_domain(domain_xml: bytes, vmi: Vmi, host: HostCpuSource) -> Outcome:
    """Pin the domain's vCPUs, emulator and IO threads as the VMI requests.

    Without a pin request the input bytes are returned unchanged. Raises
    InvalidInput for a malformed domain, StrictPolicyViolation when the
    strict policy meets a problem, and HostCpuError when the host CPUs
    cannot be read. Under the other policies, problems with entries are
    returned in the Outcome, not raised.
    """
    policy, policy_problem = policies.parse_policy(vmi.policy)
    if not vmi.requests_pinning:
        return Outcome(domain_xml=domain_xml, vmi=vmi, plan=None, problems=ProblemList(vmi.problems), policy=policy)

    tree = domainxml.parse_domain(domain_xml)
    current = domainxml.read_cputune(tree)
    vcpu_count = domainxml.read_vcpu_count(tree)
    guest = domainxml.read_guest_topology(tree, vcpu_count)

    if vmi.dedicated_cpu_placement and current.vcpu_pins:
        # With dedicatedCpuPlacement, KubeVirt has already pinned every vCPU
        # to the compute container's exclusive CPUs. Those pins are the
        # sidecar's only view of that container's cpuset.
        available = frozenset().union(*current.vcpu_pins.values())
        topology = host.topology()
    else:
        available, topology = host.read()

    entries, parse_problems = pinlist.parse_pin_list(vmi.pin_list or (), vcpu_count=vcpu_count)
    plan = planning.plan_pins(
        entries,
        vcpu_count=vcpu_count,
        available=available,
        existing_pins=current.vcpu_pins,
        unpinned=_UNPINNED.get(policy, ""),
    )
    threads = threadpins.plan_thread_pins(
        vmi.emulator_pin,
        vmi.iothread_pins,
        available=available,
        iothread_ids=domainxml.read_iothread_ids(tree),
        existing_emulator=current.emulator_pin,
        existing_iothreads=current.iothread_pins,
    )
    problems = ProblemList(vmi.problems)
    if policy_problem is not None:
        problems.append(policy_problem)
    for found in (parse_problems, plan.problems, threads.problems):
        problems.extend(found)

    if policy is Policy.AUTO:
        pinned_cpus = set().union(*plan.pins.values(), threads.emulator or (), *threads.iothreads.values())
        floating = [vcpu for vcpu in range(vcpu_count) if vcpu not in plan.pins]
        chosen, auto_problems = policies.assign_free_cpus(
            floating, free=available - pinned_cpus, guest=guest, host=topology
        )
        plan = dataclasses.replace(plan, pins={**plan.pins, **chosen})
        problems.extend(auto_problems)

    problems.extend(advisories.check_pins(plan.pins, guest=guest, host=topology))
    if vmi.migration_target:
        problems.extend(_migration_problems(entries, available))

    rejected = problems.rejections()
    if policy is Policy.STRICT and len(rejected):
        raise StrictPolicyViolation(policies.strict_message(rejected), problems=rejected)

    plan = dataclasses.replace(plan, pins=dict(sorted(plan.pins.items())), problems=problems)
    result = domainxml.CpuTune(vcpu_pins=plan.pins, emulator_pin=threads.emulator, iothread_pins=threads.iothreads)
    if result == current:
        # Nothing to change: hand back the caller's bytes, not a re-serialisation.
        return Outcome(domain_xml=domain_xml, vmi=vmi, plan=plan, problems=plan.problems, policy=policy)

    domainxml.write_cputune(tree, result)
    return Outcome(
        domain_xml=domainxml.serialize_domain(tree),
        vmi=vmi,
        plan=plan,
        problems=plan.problems,
        policy=policy,
        changed=True,
    )


# The fate of a vCPU without a pin under each policy, for the hints. Under
# float it floats over the available CPUs, which planning writes itself.
_UNPINNED = {
    Policy.STRICT: "stays unpinned, so the strict policy stops the VM",
    Policy.AUTO: "gets a free host CPU from the auto policy",
}


def _migration_problems(entries: list[pinlist.PinEntry], available: frozenset[int]) -> list[Problem]:
    """Warn a migration target about the pinned host CPUs that it lacks.

    KubeVirt discards the hook's output on a migration target, and the
    domain arrives with the source's pins, which the pin list produced.
    QEMU fails to start on the target if those CPUs are missing here.
    """
    missing = frozenset().union(*(entry.cpus for entry in entries)) - available
    if not missing:
        return []
    return [
        Problem(
            code="migration-target-cpus",
            message=f"live migration target: the pin list names host CPUs {format_cpuset(missing)}, "
            f"which this host does not have (available: {format_cpuset(available)})",
            hint="migrate to a node with the same CPU layout, or change the pin list before migrating",
            advisory=True,
        )
    ]
