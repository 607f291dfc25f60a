import pytest

from pinning_hook.pinlist import PinEntry, parse_entry, parse_pin_list
from pinning_hook.problems import Problem


@pytest.mark.parametrize(
    ("text", "vcpu", "cpus"),
    [
        ("0-2", 0, {2}),
        ("10-31", 10, {31}),
        (" 1-3 ", 1, {3}),
        ("1:0-3,^2", 1, {0, 1, 3}),
        ("0:5", 0, {5}),
        ("2:0-1,4-5", 2, {0, 1, 4, 5}),
        ("0-99999999999", 0, {99999999999}),
    ],
    ids=[
        "basic",
        "two-digits",
        "surrounding-spaces",
        "cpuset-with-exclusion",
        "cpuset-single",
        "cpuset-two-ranges",
        "cpu-beyond-any-host",
    ],
)
def test_entry_valid(text: str, vcpu: int, cpus: set[int]) -> None:
    entry = parse_entry(text)

    assert isinstance(entry, PinEntry)
    assert entry.vcpu == vcpu
    assert entry.cpus == frozenset(cpus)


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("-1-2", "negative-number", "impossible to pin negative number"),
        ("1--2", "negative-number", "impossible to pin negative number"),
        ("-1:2", "negative-number", "impossible to pin negative number"),
        ("1:-2", "negative-number", "impossible to pin negative number"),
        ("0x1-2", "invalid-entry", "invalid pin entry '0x1-2': it is in neither accepted form"),
        ("1-٣", "invalid-entry", "invalid pin entry '1-٣': it is in neither accepted form"),
        ("", "invalid-entry", "invalid pin entry '': it is in neither accepted form"),
        ("1", "invalid-entry", "invalid pin entry '1': it is in neither accepted form"),
        ("1-2-3", "invalid-entry", "invalid pin entry '1-2-3': it is in neither accepted form"),
        ("1:3-1", "invalid-entry", "invalid pin entry '1:3-1': '3-1': the range ends before it starts"),
        ("1:", "invalid-entry", "invalid pin entry '1:': the cpuset is empty"),
        ("1:2,^2", "empty-cpuset", "invalid pin entry '1:2,^2': its exclusions leave no host CPU"),
    ],
    ids=[
        "negative-vcpu",
        "negative-cpu",
        "negative-vcpu-cpuset",
        "negative-cpuset",
        "hex",
        "arabic-indic-digit",
        "empty",
        "vcpu-only",
        "three-numbers",
        "reversed-range",
        "empty-cpuset",
        "all-excluded",
    ],
)
def test_entry_invalid(text: str, code: str, message: str) -> None:
    problem = parse_entry(text)

    assert isinstance(problem, Problem)
    assert problem.code == code
    assert problem.message == message
    assert problem.entry == text


def test_invalid_entry_hint_shows_accepted_forms() -> None:
    problem = parse_entry("zero-two")

    assert isinstance(problem, Problem)
    assert '"V-P"' in problem.hint
    assert '"V:CPUSET"' in problem.hint


def test_huge_entry_is_cut_in_message() -> None:
    problem = parse_entry("0-" + "9" * 10000)

    assert isinstance(problem, Problem)
    assert problem.code == "invalid-entry"
    assert len(problem.message) < 200
    assert "10002 characters" in problem.message


def test_list_sorted_by_vcpu() -> None:
    entries, problems = parse_pin_list(["1-3", "0-2"])

    assert [entry.vcpu for entry in entries] == [0, 1]
    assert list(problems) == []


def test_list_duplicate_vcpu_last_wins() -> None:
    entries, problems = parse_pin_list(["1-2", "0-0", "1-3"])

    assert [(entry.vcpu, entry.cpus) for entry in entries] == [(0, frozenset({0})), (1, frozenset({3}))]
    assert [problem.message for problem in problems] == ["vCPU 1 is listed twice: '1-3' replaces '1-2'"]


def test_list_keeps_valid_entries_beside_invalid() -> None:
    entries, problems = parse_pin_list(["0-2", "oops", "-1-1", "1-3"])

    assert [entry.text for entry in entries] == ["0-2", "1-3"]
    assert [problem.code for problem in problems] == ["invalid-entry", "negative-number"]
