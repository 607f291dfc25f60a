import pytest

from pinning_hook.cpusets import MAX_CPU_ID, CpusetSyntaxError, format_cpuset, parse_cpuset


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", {0}),
        ("0-3", {0, 1, 2, 3}),
        ("0-3,^2", {0, 1, 3}),
        ("^2,0-3", {0, 1, 2, 3}),
        (" 1 , 4-5 ", {1, 4, 5}),
        ("0-1,4-5\n", {0, 1, 4, 5}),
        ("3-3", {3}),
        ("0-2,^0,^1,^2", set()),
    ],
    ids=[
        "single",
        "range",
        "exclusion",
        "exclusion-first-is-undone",
        "spaces",
        "sysfs-newline",
        "one-cpu-range",
        "all-excluded",
    ],
)
def test_parse_cpuset_valid(text: str, expected: set[int]) -> None:
    assert parse_cpuset(text) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("3-1", "ends before it starts"),
        ("a", "not a CPU id"),
        ("1,,2", "not a CPU id"),
        ("٣", "not a CPU id"),
        ("^1-2", "single CPU id"),
        (f"0-{MAX_CPU_ID + 1}", "beyond libvirt's limit"),
        ("9" * 5000, "beyond libvirt's limit"),
        ("-1", "not a CPU id"),
    ],
    ids=[
        "empty",
        "reversed-range",
        "letter",
        "empty-item",
        "arabic-indic-digit",
        "excluded-range",
        "above-libvirt-max",
        "huge-number",
        "negative",
    ],
)
def test_parse_cpuset_invalid(text: str, fragment: str) -> None:
    with pytest.raises(CpusetSyntaxError, match=fragment):
        parse_cpuset(text)


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [({0}, "0"), ({0, 1, 2, 3}, "0-3"), ({0, 1, 4, 5}, "0-1,4-5"), ({0, 2, 4}, "0,2,4"), (set(), "")],
    ids=["single", "range", "two-ranges", "no-ranges", "empty"],
)
def test_format_cpuset(cpus: set[int], expected: str) -> None:
    assert format_cpuset(cpus) == expected


def test_format_parse_round_trip() -> None:
    cpus = frozenset({0, 1, 2, 5, 7, 8, 9, 100})
    assert parse_cpuset(format_cpuset(cpus)) == cpus
