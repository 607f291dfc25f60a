"""The `pinning-hook` command: `serve` for the sidecar, `plan` and `verify` for people.

The subcommands are thin: `serve` hands its settings to `server.serve`, and
`plan` and `verify` run the same `rewrite.rewrite_domain` that
OnDefineDomain runs. Exit codes: 0 success, 1 the sidecar cannot run here,
2 invalid input. `verify` follows diff's convention instead: 0 the live pins
match the plan, 1 they differ, 2 any error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from pinning_hook import __version__, hostcpus, logs
from pinning_hook.cpusets import format_cpuset
from pinning_hook.errors import InvalidInput, PinningHookError, StrictPolicyViolation

if TYPE_CHECKING:
    from pinning_hook.rewrite import Outcome

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CANNOT_RUN = 1
EXIT_INVALID_INPUT = 2
EXIT_MISMATCH = 1
EXIT_VERIFY_ERROR = 2

# virt-launcher distinguishes sockets by file name, so two sidecars in one
# pod need two names. The container name (hook-sidecar-0, hook-sidecar-1,
# ...) is unique in the pod: put it in CONTAINER_NAME, or pass --socket-name.
CONTAINER_NAME_ENV = "CONTAINER_NAME"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pinning-hook",
        description="KubeVirt hook sidecar that pins each vCPU to the host CPU the user names.",
    )
    # Top level only: after "serve", --version names a hook API version.
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve KubeVirt's hook API on a unix socket")
    serve.add_argument(
        "--socket-dir",
        # A str, not a Path: Path("") would turn an empty value into ".".
        default="/var/run/kubevirt-hooks",
        help="directory for the socket, the one virt-launcher scans (default: %(default)s)",
    )
    serve.add_argument(
        "--socket-name",
        help=f"socket file name (default: pinning-hook-${CONTAINER_NAME_ENV}.sock, or pinning-hook.sock "
        f"when {CONTAINER_NAME_ENV} is unset)",
    )
    serve.add_argument(
        "--version",
        dest="versions",
        action="append",
        choices=("v1alpha1", "v1alpha2", "v1alpha3"),
        help="hook API version to offer; repeat for several (default: all three)",
    )
    _add_host_cpus(serve)
    serve.add_argument(
        "--log-format", choices=logs.LOG_FORMATS, default="json", help="log line format (default: %(default)s)"
    )

    plan = commands.add_parser("plan", help="show the pins a VMI would get, without KubeVirt")
    _add_plan_inputs(plan, domain_option="--domain")
    plan.add_argument(
        "--output",
        choices=("table", "xml"),
        default="table",
        help="'table' prints the vCPU affinities as virsh vcpupin does; 'xml' prints the rewritten domain",
    )
    plan.add_argument("--log-format", choices=logs.LOG_FORMATS, default="text", help="format of the messages on stderr")

    verify = commands.add_parser(
        "verify",
        help="compare a running VM's vCPU pins with the plan",
        description="Compare a running VM's vCPU pins with the plan. Reads `virsh vcpupin DOMAIN` output on stdin, "
        "or asks libvirt with --connect and --domain. Exit 0 when every vCPU matches, 1 when some differ "
        "(one line per vCPU), 2 on any error.",
    )
    _add_plan_inputs(verify, domain_option="--domain-xml")
    verify.add_argument(
        "--connect",
        metavar="URI",
        help="read the pins from libvirt at URI instead of stdin (needs libvirt-python and --domain)",
    )
    verify.add_argument(
        "--domain", metavar="NAME", help="with --connect: the domain's ID, UUID or name, as virsh takes"
    )
    verify.add_argument(
        "--log-format", choices=logs.LOG_FORMATS, default="text", help="format of the messages on stderr"
    )
    return parser


def _add_plan_inputs(parser: argparse.ArgumentParser, *, domain_option: str) -> None:
    parser.add_argument("--vmi", required=True, type=pathlib.Path, help="VMI or VirtualMachine manifest, YAML or JSON")
    parser.add_argument(
        domain_option,
        dest="domain_xml",
        metavar="FILE",
        type=pathlib.Path,
        help="the domain XML virt-launcher built, before the hook (default: a domain built from the VMI's "
        "CPU topology; give the real one for a VMI with dedicatedCpuPlacement)",
    )
    _add_host_cpus(parser)


def _add_host_cpus(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host-cpus",
        metavar="CPUSET",
        default=os.environ.get(hostcpus.HOST_CPUS_ENV),
        help=f"host CPUs that pins may use, in libvirt cpuset syntax such as '0-3,8-11' "
        f"(default: ${hostcpus.HOST_CPUS_ENV}, else the online CPUs within this process's affinity)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logs.configure_logging(arguments.log_format, level=logging.INFO)

    try:
        if arguments.command == "serve":
            return run_serve(arguments)
        if arguments.command == "verify":
            return run_verify(arguments, sys.stdin, sys.stdout)
        return run_plan(arguments, sys.stdout)
    except InvalidInput as error:
        if isinstance(error, StrictPolicyViolation):
            # The server logs each problem with its hint before rejecting; so does the CLI.
            logs.log_problems(logger, error.problems, {})
        logger.error("%s", error)
        return EXIT_VERIFY_ERROR if arguments.command == "verify" else EXIT_INVALID_INPUT
    except PinningHookError as error:
        logger.error("%s", error)
        return EXIT_VERIFY_ERROR if arguments.command == "verify" else EXIT_CANNOT_RUN


def _host_cpus_option(arguments: argparse.Namespace) -> frozenset[int] | None:
    if arguments.host_cpus is None:
        return None
    source = "--host-cpus" if os.environ.get(hostcpus.HOST_CPUS_ENV) != arguments.host_cpus else hostcpus.HOST_CPUS_ENV
    return hostcpus.parse_host_cpus_option(arguments.host_cpus, source=source)


def run_serve(arguments: argparse.Namespace) -> int:
    from pinning_hook import server

    container = os.environ.get(CONTAINER_NAME_ENV, "")
    default_name = f"{server.HOOK_NAME}-{container}.sock" if container else f"{server.HOOK_NAME}.sock"
    socket_name = default_name if arguments.socket_name is None else arguments.socket_name
    if "/" in socket_name or socket_name in {"", ".", ".."}:
        raise InvalidInput(f"--socket-name {socket_name!r} must be a plain file name, such as 'pinning-hook.sock'")

    if not arguments.socket_dir:
        raise InvalidInput("--socket-dir is empty; give the directory virt-launcher scans, /var/run/kubevirt-hooks")

    versions = tuple(dict.fromkeys(arguments.versions)) if arguments.versions else tuple(server.HOOK_VERSIONS)
    host_cpus = _host_cpus_option(arguments)
    _warn_offline_host_cpus(host_cpus)
    settings = server.ServerSettings(
        socket_dir=pathlib.Path(arguments.socket_dir),
        socket_name=socket_name,
        versions=versions,
        host_cpus=host_cpus,
    )
    return server.serve(settings)


def _warn_offline_host_cpus(host_cpus: frozenset[int] | None) -> None:
    """Warn when --host-cpus names CPUs that are not online here: pins to them make QEMU fail."""
    if host_cpus is None:
        return
    try:
        online = hostcpus.read_online_cpus()
    except PinningHookError:
        return
    offline = host_cpus - online
    if offline:
        logger.warning(
            "--host-cpus names host CPUs %s that are not online on this node; a pin to them makes QEMU fail "
            "to start with 'cannot set CPU affinity'",
            format_cpuset(offline),
        )


def run_plan(arguments: argparse.Namespace, out: TextIO) -> int:
    from pinning_hook.vcpupin_table import format_table

    outcome = _rewrite_for_manifest(arguments)
    if arguments.output == "xml":
        out.write(outcome.domain_xml.decode("utf-8"))
        if not outcome.domain_xml.endswith(b"\n"):
            out.write("\n")
        return EXIT_OK

    if outcome.plan is None:
        out.write(f"{outcome.vmi.reference or arguments.vmi}: no pin list; the domain is left unchanged\n")
        return EXIT_OK
    plan = outcome.plan
    out.write(format_table({vcpu: plan.affinity(vcpu) for vcpu in range(plan.vcpu_count)}))
    return EXIT_OK


def run_verify(arguments: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    from pinning_hook.verification import find_mismatches

    if (arguments.connect is None) != (arguments.domain is None):
        raise InvalidInput(
            "--connect and --domain go together: give both to ask libvirt, or neither to read stdin; "
            "a domain XML file goes to --domain-xml"
        )
    if arguments.connect is None and stdin.isatty():
        raise InvalidInput(
            "verify reads `virsh vcpupin DOMAIN` output on stdin: pipe it in, "
            "or pass --connect URI --domain NAME to ask libvirt"
        )

    outcome = _rewrite_for_manifest(arguments)
    if outcome.plan is None:
        raise InvalidInput(
            f"{outcome.vmi.reference or arguments.vmi} has no pin list, so the sidecar leaves its pins as "
            "KubeVirt writes them and there is no plan to verify"
        )

    if arguments.connect is not None:
        from pinning_hook.libvirtpins import read_live_affinities

        live = read_live_affinities(arguments.connect, arguments.domain)
    else:
        from pinning_hook.vcpupin_table import parse_table

        live = parse_table(stdin.read())

    mismatches = find_mismatches(outcome.plan, live)
    for mismatch in mismatches:
        out.write(mismatch.describe() + "\n")
    if mismatches:
        return EXIT_MISMATCH
    out.write(f"all {outcome.plan.vcpu_count} vCPUs match the plan\n")
    return EXIT_OK


def _rewrite_for_manifest(arguments: argparse.Namespace) -> Outcome:
    """Run the OnDefineDomain rewrite for the --vmi manifest and log its problems, as `plan` shows them."""
    from pinning_hook import domainxml, rewrite
    from pinning_hook import vmi as vmis
    from pinning_hook.host import HostCpuSource

    vmi = vmis.read_vmi(_load_manifest(arguments.vmi))
    domain_xml = _read_domain_xml(arguments.domain_xml) if arguments.domain_xml else domainxml.build_domain_for_vmi(vmi)

    host = HostCpuSource(override=_host_cpus_option(arguments))
    outcome = rewrite.rewrite_domain(domain_xml, vmi, host)
    logs.log_problems(logger, outcome.problems, {"namespace": vmi.namespace, "name": vmi.name})
    return outcome


def _read_domain_xml(path: pathlib.Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read the domain XML {str(path)!r}: {error.strerror}") from error


def _load_manifest(path: pathlib.Path) -> Any:
    """Load a YAML or JSON manifest; JSON is YAML too, so one loader serves both."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot read the VMI manifest {str(path)!r}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the VMI manifest {str(path)!r} is not UTF-8 text") from error

    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{str(path)!r} is not valid JSON: {error}") from error

    import yaml

    try:
        documents = [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as error:
        raise InvalidInput(f"{str(path)!r} is not valid YAML: {error}") from error
    if len(documents) != 1:
        raise InvalidInput(f"{str(path)!r} contains {len(documents)} YAML documents; give it exactly one VMI")
    return documents[0]
