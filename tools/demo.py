"""`make demo`: the sidecar's main job on a bundled example, end to end.

1. Start `pinning-hook serve` on a temporary socket directory.
2. Call it as virt-launcher does (Info, then OnDefineDomain) with
   examples/demo/domain.xml and the VMI in examples/demo/vmi.json.
3. Print the rewritten `<cputune>` and the planned vCPU affinities.
4. Where virsh and QEMU are installed and this runs as root, start the
   rewritten domain under QEMU (TCG) and print what `virsh vcpupin` reports.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tempfile

from launcher_client import LauncherClient, find_socket
from lxml import etree

from pinning_hook.cpusets import parse_cpuset
from pinning_hook.hostcpus import detect_available_cpus
from pinning_hook.vcpupin_table import format_table

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO_ROOT / "examples" / "demo"


def heading(text: str) -> None:
    print(f"\n== {text}")


def planned_affinities(domain_xml: bytes, available: frozenset[int]) -> dict[int, frozenset[int]]:
    """vCPU -> host CPUs as libvirt will apply them: the pin, or every available CPU."""
    root = etree.fromstring(domain_xml)
    vcpu_count = int(root.findtext("vcpu") or "0")
    pins = {int(pin.get("vcpu", "")): parse_cpuset(pin.get("cpuset", "")) for pin in root.iterfind("cputune/vcpupin")}
    return {vcpu: pins.get(vcpu, available) for vcpu in range(vcpu_count)}


def run_sidecar_once(socket_dir: pathlib.Path, domain_xml: bytes, vmi_json: bytes) -> tuple[bytes, str]:
    """Start the sidecar, call it like virt-launcher, shut it down; return its output and log."""
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "pinning_hook", "serve", "--socket-dir", str(socket_dir), "--log-format", "text"],
        cwd=socket_dir,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = LauncherClient(find_socket(socket_dir))
        info = client.info()
        version = client.pick_version()
        print(
            f"Info: name={info.name} versions={','.join(info.versions)} "
            f"hook points={','.join(name for name, _ in info.hook_points)}"
        )
        print(f"virt-launcher would pick {version}; calling OnDefineDomain")
        output = client.on_define_domain(domain_xml, vmi_json, version)
        client.shutdown()
        _, log = sidecar.communicate(timeout=10)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()
    if sidecar.returncode != 0:
        raise SystemExit(f"the sidecar exited with {sidecar.returncode}:\n{log}")
    return output, log


def main() -> int:
    domain_xml = (EXAMPLE_DIR / "domain.xml").read_bytes()
    vmi_json = (EXAMPLE_DIR / "vmi.json").read_bytes()
    annotation = re.search(rb'"cpu-pinning.vm.kubevirt.io/pinning": "(.*)"', vmi_json)
    heading("Pin list (annotation cpu-pinning.vm.kubevirt.io/pinning)")
    print(annotation.group(1).decode().replace('\\"', '"') if annotation else "(none)")

    heading("Sidecar, called as virt-launcher calls it")
    with tempfile.TemporaryDirectory(prefix="pinning-hook-demo-") as socket_dir:
        output, log = run_sidecar_once(pathlib.Path(socket_dir), domain_xml, vmi_json)

    heading("Rewritten <cputune>")
    cputune = re.search(rb"[ \t]*<cputune>.*?</cputune>", output, re.DOTALL)
    print(cputune.group(0).decode() if cputune else "(no <cputune>: the domain came back unchanged)")

    available = detect_available_cpus()
    heading(f"Planned affinities on this host (available CPUs: {len(available)})")
    print(format_table(planned_affinities(output, available)), end="")

    heading("Sidecar log")
    print(log, end="")

    heading("virsh vcpupin on the running domain (real libvirt and QEMU, TCG)")
    import realvirt

    missing = realvirt.missing_requirements(python_binding=False)
    if missing:
        print("skipped; this needs: " + "; ".join(missing) + ". " + realvirt.INSTALL_HINT)
        return 0
    with tempfile.TemporaryDirectory(prefix="pinning-hook-demo-") as work_dir:
        domain_file = pathlib.Path(work_dir) / "domain.xml"
        domain_file.write_bytes(output)
        print(realvirt.run_virsh_vcpupin(domain_file), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
