"""The rewrite as one process per call, the way KubeVirt's sidecar-shim runs a hook script.

The shim execs `onDefineDomain --vmi VMI_JSON --domain DOMAIN_XML` for each
OnDefineDomain call and returns what the process prints on stdout. This
script does the same rewrite as `pinning-hook serve`, with the package's
pure code, so that the benchmark can compare the two ways of serving it.
Problems with single pin-list entries are written to stderr.
"""

from __future__ import annotations

import argparse
import sys

from pinning_hook import rewrite, vmi
from pinning_hook.host import HostCpuSource


def main() -> int:
    parser = argparse.ArgumentParser(description="Rewrite one domain's vCPU pins and print the domain XML.")
    parser.add_argument("--vmi", required=True, help="the VirtualMachineInstance as JSON")
    parser.add_argument("--domain", required=True, help="the domain XML")
    arguments = parser.parse_args()

    instance = vmi.parse_vmi_json(arguments.vmi.encode())
    outcome = rewrite.rewrite_domain(arguments.domain.encode(), instance, HostCpuSource())
    for problem in outcome.problems:
        print(f"{problem.message} ({problem.hint})", file=sys.stderr)
    sys.stdout.buffer.write(outcome.domain_xml)
    return 0


if __name__ == "__main__":
    sys.exit(main())
