"""Comparing live vCPU affinities with the plan, one line per mismatching vCPU."""

from __future__ import annotations

import pytest

from pinning_hook.planning import Plan
from pinning_hook.verification import find_mismatches

HOST = frozenset(range(4))
# vCPU 0 pinned to CPU 2, vCPU 1 floating over CPUs 0-3.
PLAN = Plan(vcpu_count=2, available=HOST, pins={0: frozenset({2})})


@pytest.mark.parametrize(
    ("live", "lines"),
    [
        ({0: frozenset({2}), 1: HOST}, []),
        ({0: frozenset({3}), 1: HOST}, ["vCPU 0: expected 2, actual 3"]),
        ({0: frozenset({2}), 1: frozenset({3})}, ["vCPU 1: expected 0-3, actual 3"]),
        ({0: frozenset({2})}, ["vCPU 1: expected 0-3, actual (not listed)"]),
        (
            {0: frozenset({2}), 1: HOST, 2: frozenset({1})},
            ["vCPU 2: expected (the domain has no such vCPU), actual 1"],
        ),
        (
            {0: frozenset({0, 1}), 1: frozenset({2})},
            ["vCPU 0: expected 2, actual 0-1", "vCPU 1: expected 0-3, actual 2"],
        ),
    ],
    ids=["all-match", "pinned-elsewhere", "floating-vcpu-pinned", "vcpu-not-listed", "extra-vcpu", "both-differ"],
)
def test_mismatches_described_per_vcpu(live: dict[int, frozenset[int]], lines: list[str]) -> None:
    assert [mismatch.describe() for mismatch in find_mismatches(PLAN, live)] == lines
