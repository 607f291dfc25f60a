"""Every VMI and VirtualMachine under examples/ passes `pinning-hook plan`.

Each example is planned against host CPUs 0-7 and must exit 0 with its
expected `VCPU   CPU Affinity` table. Manifests of other kinds, such as the
KubeVirt CR, are not VMIs and are skipped.
"""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml
from conftest import REPO_ROOT

from pinning_hook import cli
from pinning_hook.vcpupin_table import format_table

EXAMPLES_DIR = REPO_ROOT / "examples"
HOST_CPUS = "0-7"
ALL_HOST_CPUS = frozenset(range(8))
VMI_KINDS = {"VirtualMachineInstance", "VirtualMachine"}

# Example path -> (planned affinity per vCPU, warning on stderr or "").
EXPECTED: dict[str, tuple[dict[int, frozenset[int]], str]] = {
    "vmi-basic.yaml": ({0: frozenset({2}), 1: frozenset({3})}, ""),
    "vm-pinned.yaml": ({0: frozenset({4}), 1: frozenset({5}), 2: frozenset({6}), 3: frozenset({7})}, ""),
    "vmi-partial.yaml": ({0: frozenset({2}), 1: ALL_HOST_CPUS}, ""),
    "vmi-dedicated.yaml": ({0: frozenset({3}), 1: frozenset({2})}, ""),
    "vmi-policy-strict.yaml": ({0: frozenset({2}), 1: frozenset({3})}, ""),
    "vmi-policy-auto.yaml": ({0: frozenset({2}), 1: frozenset({3})}, ""),
    # The demo's pin list names host CPU 4096, beyond CPUs 0-7.
    "demo/vmi.json": (
        {0: frozenset({1}), 1: frozenset({0}), 2: ALL_HOST_CPUS},
        "impossible to pin 4096 on host where we have only 8",
    ),
}


def manifest_kind(path: pathlib.Path) -> str:
    text = path.read_text()
    document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return str(document.get("kind", ""))


def vmi_examples() -> list[str]:
    paths = sorted([*EXAMPLES_DIR.rglob("*.yaml"), *EXAMPLES_DIR.rglob("*.json")])
    return [str(path.relative_to(EXAMPLES_DIR)) for path in paths if manifest_kind(path) in VMI_KINDS]


def test_every_vmi_example_has_expected_plan() -> None:
    assert sorted(vmi_examples()) == sorted(EXPECTED)


def test_feature_gate_example_is_kubevirt_cr() -> None:
    assert manifest_kind(EXAMPLES_DIR / "kubevirt-sidecar-gate.yaml") == "KubeVirt"


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_plans_cleanly(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    affinities, warning = EXPECTED[example]

    exit_code = cli.main(["plan", "--vmi", str(EXAMPLES_DIR / example), "--host-cpus", HOST_CPUS])
    captured = capsys.readouterr()

    assert exit_code == 0
    assert captured.out == format_table(affinities)
    if warning:
        assert warning in captured.err
    else:
        assert captured.err == ""
