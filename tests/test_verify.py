"""`pinning-hook verify` against real `virsh vcpupin` output and real libvirt.

The domains run under real libvirt and QEMU (TCG). virsh runs as its own
process on an embed root of its own. `--connect` runs in this process on
the session's embedded libvirt, because libvirt 9 allows one embed root per
process. Opening that same root a second time works.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Callable

import pytest
import realvirt
from conftest import GOLDEN_DIR, make_vmi

from pinning_hook import cli
from pinning_hook.cpusets import format_cpuset
from pinning_hook.host import HostCpuSource
from pinning_hook.rewrite import rewrite_domain
from pinning_hook.vmi import read_vmi

pytestmark = pytest.mark.libvirt

# virt-launcher's domain for a 2-vCPU VMI, before the hook.
LAUNCHER_DOMAIN = GOLDEN_DIR / "qemu-2vcpu.xml"
DOMAIN_NAME = "default_e2e-pinned"

# A function from a pin list to what `virsh vcpupin` printed for the domain hooked with it.
VirshOutput = Callable[[list[str]], str]


@pytest.fixture(scope="module")
def host() -> list[int]:
    cpus = sorted(realvirt.host_cpus())
    if len(cpus) < 2:
        pytest.skip(f"pinning two vCPUs apart needs two host CPUs; this host has {cpus}")
    return cpus


def write_vmi(directory: pathlib.Path, pins: list[str]) -> pathlib.Path:
    path = directory / "vmi.json"
    path.write_text(json.dumps(make_vmi(pins, name="e2e-pinned")))
    return path


def hooked_domain(pins: list[str]) -> bytes:
    """Rewrite virt-launcher's domain as the sidecar does, with the host's own CPUs."""
    outcome = rewrite_domain(LAUNCHER_DOMAIN.read_bytes(), read_vmi(make_vmi(pins)), HostCpuSource())
    return outcome.domain_xml


@pytest.fixture(scope="module")
def virsh_tables(
    virt: realvirt.EmbeddedLibvirt, tmp_path_factory: pytest.TempPathFactory, host: list[int]
) -> VirshOutput:
    """Start the hooked domain under QEMU once per pin list and return what `virsh vcpupin` printed."""
    tables: dict[tuple[str, ...], str] = {}

    def vcpupin_output(pins: list[str]) -> str:
        if tuple(pins) not in tables:
            domain_file = tmp_path_factory.mktemp("virsh") / "domain.xml"
            domain_file.write_bytes(hooked_domain(pins))
            tables[tuple(pins)] = realvirt.run_virsh_vcpupin(domain_file, capabilities_cache_from=virt.root)
        return tables[tuple(pins)]

    return vcpupin_output


def run_verify(tmp_path: pathlib.Path, stdin: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `virsh vcpupin ... | pinning-hook verify ...` as a person would."""
    return subprocess.run(
        [sys.executable, "-m", "pinning_hook", "verify", *arguments],
        input=stdin,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("domain_option", [[], ["--domain-xml", str(LAUNCHER_DOMAIN)]], ids=["built", "launcher"])
def test_matching_pins_exit_0(
    virsh_tables: VirshOutput, tmp_path: pathlib.Path, host: list[int], domain_option: list[str]
) -> None:
    pins = [f"0-{host[-1]}", f"1-{host[0]}"]
    table = virsh_tables(pins)

    result = run_verify(tmp_path, table, "--vmi", str(write_vmi(tmp_path, pins)), *domain_option)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "all 2 vCPUs match the plan\n"


def test_floating_vcpu_matches_host_cpus(virsh_tables: VirshOutput, tmp_path: pathlib.Path, host: list[int]) -> None:
    pins = [f"0-{host[-1]}"]
    table = virsh_tables(pins)
    vmi_file = write_vmi(tmp_path, pins)

    matching = run_verify(tmp_path, table, "--vmi", str(vmi_file), "--host-cpus", format_cpuset(host))
    # Planned against fewer host CPUs, the floating vCPU should float over those only.
    narrower = run_verify(tmp_path, table, "--vmi", str(vmi_file), "--host-cpus", str(host[-1]))

    assert matching.returncode == 0, matching.stderr
    assert narrower.returncode == 1, narrower.stderr
    assert narrower.stdout == f"vCPU 1: expected {host[-1]}, actual {format_cpuset(host)}\n"


def test_mismatching_pins_exit_1(virsh_tables: VirshOutput, tmp_path: pathlib.Path, host: list[int]) -> None:
    low, high = host[0], host[-1]
    table = virsh_tables([f"0-{high}"])
    # The VMI requests other pins than those the domain was started with.
    vmi_file = write_vmi(tmp_path, [f"0-{low}", f"1-{high}"])

    result = run_verify(tmp_path, table, "--vmi", str(vmi_file), "--host-cpus", format_cpuset(host))

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"vCPU 0: expected {low}, actual {high}",
        f"vCPU 1: expected {high}, actual {format_cpuset(host)}",
    ]


def test_malformed_virsh_output_exits_2(tmp_path: pathlib.Path) -> None:
    table = " VCPU   CPU Affinity\n----------------------\n 0      2\n 1      three\n"

    result = run_verify(tmp_path, table, "--vmi", str(write_vmi(tmp_path, ["0-2"])), "--host-cpus", "0-3")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "line 4 of the virsh vcpupin output, ' 1      three'" in result.stderr


def test_connect_reads_pins_from_libvirt(
    virt: realvirt.EmbeddedLibvirt,
    tmp_path: pathlib.Path,
    host: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pins = [f"0-{host[-1]}"]
    vmi_file = write_vmi(tmp_path, pins)
    arguments = ["verify", "--vmi", str(vmi_file), "--host-cpus", format_cpuset(host), "--connect", virt.uri]

    with virt.running_domain(hooked_domain(pins).decode()) as domain:
        for identifier in (DOMAIN_NAME, str(domain.ID()), domain.UUIDString()):
            assert cli.main([*arguments, "--domain", identifier]) == 0
            assert capsys.readouterr().out == "all 2 vCPUs match the plan\n"

        swapped = write_vmi(tmp_path, [f"0-{host[0]}"])
        swapped_arguments = ["verify", "--vmi", str(swapped), "--connect", virt.uri, "--domain", DOMAIN_NAME]
        assert cli.main([*swapped_arguments, "--host-cpus", format_cpuset(host)]) == 1
        assert capsys.readouterr().out == f"vCPU 0: expected {host[0]}, actual {host[-1]}\n"


def test_connect_unknown_domain_exits_2(
    virt: realvirt.EmbeddedLibvirt, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["verify", "--vmi", str(write_vmi(tmp_path, ["0-0"])), "--host-cpus", "0"]

    assert cli.main([*arguments, "--connect", virt.uri, "--domain", "no-such-domain"]) == 2
    assert "cannot read the vCPU pins of domain 'no-such-domain'" in capsys.readouterr().err


def test_connect_without_libvirt_binding_exits_2(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A None entry in sys.modules makes `import libvirt` raise ImportError.
    monkeypatch.setitem(sys.modules, "libvirt", None)
    arguments = ["verify", "--vmi", str(write_vmi(tmp_path, ["0-0"])), "--host-cpus", "0"]

    assert cli.main([*arguments, "--connect", "test:///default", "--domain", "test"]) == 2
    assert "--connect needs the libvirt Python binding" in capsys.readouterr().err
