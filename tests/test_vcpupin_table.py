"""The `virsh vcpupin` table: formatting for `plan`, parsing for `verify`."""

from __future__ import annotations

import pytest

from pinning_hook.vcpupin_table import TableSyntaxError, format_table, parse_table

# Printed by virsh 9.0.0 (Debian bookworm) for a 2-vCPU domain on a 2-CPU
# host, with vCPU 0 pinned to CPU 1 and vCPU 1 floating.
VIRSH_OUTPUT = " VCPU   CPU Affinity\n----------------------\n 0      1\n 1      0-1\n\n"


def test_parses_virsh_output() -> None:
    assert parse_table(VIRSH_OUTPUT) == {0: frozenset({1}), 1: frozenset({0, 1})}


def test_parses_what_format_table_prints() -> None:
    affinities = {0: frozenset({2}), 1: frozenset({0, 1, 4, 5}), 10: frozenset({7})}

    assert parse_table(format_table(affinities)) == affinities


def test_format_table_matches_virsh_output() -> None:
    assert format_table({0: frozenset({1}), 1: frozenset({0, 1})}) + "\n" == VIRSH_OUTPUT


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the virsh vcpupin output is empty"),
        ("\n  \n", "the virsh vcpupin output is empty"),
        ("error: failed to get domain '1'\n", 'line 1 of the virsh vcpupin output is "error: failed'),
        (" VCPU   CPU Affinity\n", "ends after its header"),
        (
            " VCPU   CPU Affinity\n 0      1\n",
            "line 2 of the virsh vcpupin output is ' 0      1', expected a line of dashes",
        ),
        (" VCPU   CPU Affinity\n-----\n", "has a header but no vCPU rows"),
        (" VCPU   CPU Affinity\n-----\n 0      1\n\n one    2\n", "line 5 of the virsh vcpupin output is ' one    2'"),
        (" VCPU   CPU Affinity\n-----\n 0      1-x\n", "line 3 of the virsh vcpupin output, ' 0      1-x': '1-x'"),
        (
            " VCPU   CPU Affinity\n-----\n 0      1\n 0      2\n",
            "line 4 of the virsh vcpupin output lists vCPU 0 a second time",
        ),
    ],
    ids=[
        "empty",
        "blank-lines-only",
        "virsh-error",
        "header-only",
        "no-rule",
        "no-rows",
        "vcpu-not-number",
        "cpuset-invalid",
        "vcpu-twice",
    ],
)
def test_malformed_output_names_the_line(text: str, fragment: str) -> None:
    with pytest.raises(TableSyntaxError) as raised:
        parse_table(text)

    assert fragment in str(raised.value)
