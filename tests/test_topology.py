import pathlib

from conftest import make_sysfs

from pinning_hook.host import HostCpuSource
from pinning_hook.topology import NO_TOPOLOGY, UNKNOWN, read_host_topology


def test_smt_siblings_and_nodes(tmp_path: pathlib.Path) -> None:
    cpu_root = make_sysfs(
        tmp_path,
        "0-3",
        siblings={0: "0,2", 2: "0,2", 1: "1,3", 3: "1,3"},
        packages={0: 0, 1: 0, 2: 0, 3: 0},
        nodes={0: "0-3"},
    )

    topology = read_host_topology(cpu_root)

    assert topology.has_smt
    assert topology.core_of(2) == frozenset({0, 2})
    assert topology.numa_node == {0: 0, 1: 0, 2: 0, 3: 0}
    assert topology.package[3] == 0


def test_non_contiguous_online(tmp_path: pathlib.Path) -> None:
    cpu_root = make_sysfs(tmp_path, "0-1,8-9", nodes={0: "0-1", 1: "8-9"})

    topology = read_host_topology(cpu_root)

    assert sorted(topology.siblings) == [0, 1, 8, 9]
    assert topology.nodes_of([1, 8]) == frozenset({0, 1})
    assert not topology.has_smt


def test_offline_cpus_ignored(tmp_path: pathlib.Path) -> None:
    # Present 0-255, online 0-127: the offline CPUs' siblings are dropped.
    cpu_root = make_sysfs(tmp_path, "0-127", siblings={cpu: f"{cpu},{cpu + 128}" for cpu in range(128)})

    topology = read_host_topology(cpu_root)

    assert len(topology.siblings) == 128
    assert topology.core_of(5) == frozenset({5})


def test_more_than_288_cpus(tmp_path: pathlib.Path) -> None:
    cpu_root = make_sysfs(tmp_path, "0-383", siblings={cpu: f"{cpu % 192},{cpu % 192 + 192}" for cpu in range(384)})

    topology = read_host_topology(cpu_root)

    assert len(topology.siblings) == 384
    assert topology.core_of(300) == frozenset({108, 300})


def test_memory_only_node(tmp_path: pathlib.Path) -> None:
    cpu_root = make_sysfs(tmp_path, "0-1", nodes={0: "0-1", 1: ""})

    assert read_host_topology(cpu_root).numa_node == {0: 0, 1: 0}


def test_missing_topology_files(tmp_path: pathlib.Path) -> None:
    cpu_root = tmp_path / "devices" / "system" / "cpu"
    cpu_root.mkdir(parents=True)
    (cpu_root / "online").write_text("0-1\n")

    topology = read_host_topology(cpu_root)

    assert topology.core_of(1) == frozenset({1})
    assert topology.package == {0: UNKNOWN, 1: UNKNOWN}
    assert topology.numa_node == {}


def test_cpu_hotplug_seen(tmp_path: pathlib.Path) -> None:
    cpu_root = make_sysfs(tmp_path, "0-3")
    assert len(read_host_topology(cpu_root).siblings) == 4

    (cpu_root / "online").write_text("0-1\n")

    assert len(read_host_topology(cpu_root).siblings) == 2


def test_unreadable_sysfs_gives_no_topology(tmp_path: pathlib.Path) -> None:
    source = HostCpuSource(override=frozenset({0}), sysfs_cpu_root=tmp_path / "missing")

    assert source.topology() == NO_TOPOLOGY
    assert source.read() == (frozenset({0}), NO_TOPOLOGY)
