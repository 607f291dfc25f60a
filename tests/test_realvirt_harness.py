"""Tests of the real libvirt harness in realvirt.py, against libvirt and QEMU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import realvirt

SWAPPED_PINS = {0: frozenset({1}), 1: frozenset({0})}
SWAPPED_CPUTUNE = """
  <cputune>
    <vcpupin vcpu='0' cpuset='1'/>
    <vcpupin vcpu='1' cpuset='0'/>
  </cputune>"""


def minimal_domain_xml(name: str, vcpus: int, cputune_xml: str = "") -> str:
    """Build a small TCG domain: 64 MiB, no disks, no USB controller, no balloon."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>{vcpus}</vcpu>{cputune_xml}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", {0}), ("0-1", {0, 1}), ("0-2,5\n", {0, 1, 2, 5}), ("1,3-4", {1, 3, 4})],
)
def test_parse_cpu_list(text: str, expected: set[int]) -> None:
    assert realvirt.parse_cpu_list(text) == expected


@pytest.mark.libvirt
def test_pinned_vcpus_in_libvirt_and_kernel(virt: realvirt.EmbeddedLibvirt) -> None:
    xml = minimal_domain_xml("harness-pinned", 2, SWAPPED_CPUTUNE)

    with virt.running_domain(xml) as domain:
        assert realvirt.libvirt_pins(domain) == SWAPPED_PINS
        assert realvirt.kernel_pins(domain) == SWAPPED_PINS


@pytest.mark.libvirt
def test_unpinned_vcpus_float(virt: realvirt.EmbeddedLibvirt) -> None:
    all_cpus = realvirt.host_cpus()
    xml = minimal_domain_xml("harness-unpinned", 2)

    with virt.running_domain(xml) as domain:
        assert realvirt.libvirt_pins(domain) == {0: all_cpus, 1: all_cpus}
        assert realvirt.kernel_pins(domain) == {0: all_cpus, 1: all_cpus}


@pytest.mark.libvirt
def test_virsh_vcpupin_prints_pins(virt: realvirt.EmbeddedLibvirt, tmp_path: Path) -> None:
    xml_file = tmp_path / "pinned.xml"
    xml_file.write_text(minimal_domain_xml("harness-virsh", 2, SWAPPED_CPUTUNE))

    output = realvirt.run_virsh_vcpupin(xml_file, capabilities_cache_from=virt.root)

    assert "CPU Affinity" in output
    assert realvirt.parse_virsh_vcpupin(output) == SWAPPED_PINS


@pytest.mark.libvirt
def test_virsh_failure_raises(virt: realvirt.EmbeddedLibvirt, tmp_path: Path) -> None:
    xml_file = tmp_path / "invalid-pin.xml"
    cputune = "\n  <cputune>\n    <vcpupin vcpu='0' cpuset='4096'/>\n  </cputune>"
    xml_file.write_text(minimal_domain_xml("harness-invalid", 1, cputune))

    with pytest.raises(realvirt.VirshError, match="error:"):
        realvirt.run_virsh_vcpupin(xml_file, capabilities_cache_from=virt.root)


@pytest.mark.libvirt
def test_embedded_libvirt_cleans_up_on_exit(virt: realvirt.EmbeddedLibvirt, tmp_path: Path) -> None:
    # A process can open one embed root only, so the context manager runs in
    # a child Python process. It leaves the domain running when the block ends.
    script = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import realvirt
with realvirt.EmbeddedLibvirt(capabilities_cache_from=Path(sys.argv[2])) as session:
    domain = session.start_domain(sys.argv[3])
    print(json.dumps({"root": str(session.root), "pid": realvirt.qemu_pid(domain)}))
"""
    xml = minimal_domain_xml("harness-cleanup", 1)
    tools_dir = str(Path(__file__).parent.parent / "tools")

    completed = subprocess.run(
        [sys.executable, "-c", script, tools_dir, str(virt.root), xml],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    started = json.loads(completed.stdout)
    assert not Path(started["root"]).exists()
    cmdline_file = Path(f"/proc/{started['pid']}/cmdline")
    if cmdline_file.exists():  # The pid may already belong to another process.
        assert started["root"] not in cmdline_file.read_text()
