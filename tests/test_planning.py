import pytest

from pinning_hook.pinlist import parse_pin_list
from pinning_hook.planning import Plan, describe_cpus, plan_pins

FOUR_CPUS = frozenset(range(4))


def plan(pins: list[str], *, vcpu_count: int = 2, available: frozenset[int] = FOUR_CPUS, **kwargs: object) -> Plan:
    entries, _ = parse_pin_list(pins)
    return plan_pins(entries, vcpu_count=vcpu_count, available=available, **kwargs)  # type: ignore[arg-type]


def test_basic_pins() -> None:
    result = plan(["0-2", "1-3"])

    assert result.pins == {0: frozenset({2}), 1: frozenset({3})}
    assert len(result.problems) == 0


def test_unnamed_vcpu_floats() -> None:
    result = plan(["0-2"])

    assert result.pins == {0: frozenset({2})}
    assert result.affinity(1) == FOUR_CPUS


@pytest.mark.parametrize(
    ("pins", "available", "message"),
    [
        (["0-4"], FOUR_CPUS, "impossible to pin 4 on host where we have only 4"),
        (["0-99999999999"], FOUR_CPUS, "impossible to pin 99999999999 on host where we have only 4"),
        (["0-2"], frozenset({0, 1, 4, 5}), "impossible to pin 2 on host where we have only 4 (0-1,4-5)"),
        (["0:3-5"], FOUR_CPUS, "impossible to pin 4 on host where we have only 4"),
        (["2-0"], FOUR_CPUS, "impossible to pin 2 on VM where we have only 2"),
    ],
    ids=["cpu-just-beyond", "cpu-far-beyond", "cpu-in-hole", "cpuset-partly-beyond", "vcpu-beyond"],
)
def test_rejected_entry_message(pins: list[str], available: frozenset[int], message: str) -> None:
    result = plan(pins, available=available)

    assert [problem.message for problem in result.problems] == [message]
    assert result.pins == {}
    assert result.affinity(0) == available


def test_vcpu_checked_before_cpu() -> None:
    result = plan(["5-9"])

    assert [problem.code for problem in result.problems] == ["vcpu-out-of-range"]


def test_existing_pins_kept_unless_repinned() -> None:
    existing = {0: frozenset({4}), 1: frozenset({5})}
    result = plan(["1-4", "0-9"], available=frozenset({4, 5}), existing_pins=existing)

    assert result.pins == {0: frozenset({4}), 1: frozenset({4})}
    assert [problem.message for problem in result.problems] == [
        "impossible to pin 9 on host where we have only 2 (4-5)"
    ]


def test_pins_ordered_by_vcpu() -> None:
    result = plan(["3-0", "0-3", "2-1"], vcpu_count=4)

    assert list(result.pins) == [0, 2, 3]


def test_host_hint_names_fix() -> None:
    result = plan(["1-7"])

    assert result.problems[0].hint == "entry '1-7' is ignored and vCPU 1 floats over 0-3; pin it to one of 0-3"


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [(frozenset(range(4)), "4"), (frozenset({0, 1, 4, 5}), "4 (0-1,4-5)"), (frozenset({2, 3}), "2 (2-3)")],
    ids=["contiguous-from-zero", "with-hole", "not-from-zero"],
)
def test_describe_cpus(cpus: frozenset[int], expected: str) -> None:
    assert describe_cpus(cpus) == expected
