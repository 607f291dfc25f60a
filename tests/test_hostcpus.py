import os
import pathlib

import pytest

from pinning_hook.errors import HostCpuError, InvalidInput
from pinning_hook.hostcpus import detect_available_cpus, parse_host_cpus_option, read_online_cpus


def fake_sysfs(root: pathlib.Path, online: str) -> pathlib.Path:
    cpu_root = root / "sys" / "devices" / "system" / "cpu"
    cpu_root.mkdir(parents=True)
    (cpu_root / "online").write_text(online)
    return cpu_root


@pytest.mark.parametrize(
    ("online", "expected"),
    [("0-3\n", set(range(4))), ("0-127\n", set(range(128))), ("0,2-3,8\n", {0, 2, 3, 8}), ("0-287\n", set(range(288)))],
    ids=["four-cpus", "present-beyond-online", "holes", "more-than-256"],
)
def test_online_cpus_read(tmp_path: pathlib.Path, online: str, expected: set[int]) -> None:
    assert read_online_cpus(fake_sysfs(tmp_path, online)) == frozenset(expected)


def test_online_cpus_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(HostCpuError, match="cannot read the online host CPUs"):
        read_online_cpus(tmp_path)


def test_online_cpus_garbage(tmp_path: pathlib.Path) -> None:
    with pytest.raises(HostCpuError, match="not a CPU list"):
        read_online_cpus(fake_sysfs(tmp_path, "zero\n"))


def test_available_is_online_within_affinity(tmp_path: pathlib.Path) -> None:
    affinity = os.sched_getaffinity(0)
    # Online CPUs beyond this process's affinity must not be offered.
    online = f"0-{max(affinity) + 8}\n"

    assert detect_available_cpus(fake_sysfs(tmp_path, online)) == frozenset(affinity)


def test_available_empty_intersection(tmp_path: pathlib.Path) -> None:
    far_away = max(os.sched_getaffinity(0)) + 100
    with pytest.raises(HostCpuError, match="--host-cpus"):
        detect_available_cpus(fake_sysfs(tmp_path, f"{far_away}\n"))


def test_host_cpus_option_valid() -> None:
    assert parse_host_cpus_option("0-1,4-5", source="--host-cpus") == frozenset({0, 1, 4, 5})


@pytest.mark.parametrize("text", ["0-x", "", "1,^1"], ids=["syntax", "empty", "all-excluded"])
def test_host_cpus_option_invalid(text: str) -> None:
    with pytest.raises(InvalidInput, match="--host-cpus"):
        parse_host_cpus_option(text, source="--host-cpus")
