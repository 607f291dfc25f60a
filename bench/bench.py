"""`make bench`: latency, memory and start-up of the real sidecar, measured against a floor.

Each run starts `pinning-hook serve` as a subprocess on a temporary socket
directory and calls it as virt-launcher does, through
tools/launcher_client.py: v1alpha3, a fresh connection for every
OnDefineDomain call. In the same run, and interleaved call by call, it
measures the floor: bench/echo_server.py (the same grpcio, socket type and
message types, no work) plus one lxml parse of the input and one
serialisation of the output in this process. It also runs the same rewrite
as one process per call (bench/on_define_domain.py), as KubeVirt's
sidecar-shim would.

Every figure is taken once per run; the page reports the minimum, median
and maximum over the runs. The results replace the text between the two
marker lines of --output, and the text around them is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

from lxml import etree
from report import Budget, Figure, render, write_results
from servers import (
    REPO_ROOT,
    Server,
    children_cpu_seconds,
    cpu_seconds,
    reset_peak_rss,
    start_server,
    status_mib,
)

from pinning_hook import rewrite, vmi
from pinning_hook.host import HostCpuSource

BENCH_DIR = REPO_ROOT / "bench"
FIXTURES_DIR = BENCH_DIR / "fixtures"
ECHO_SERVER = BENCH_DIR / "echo_server.py"
PER_CALL_SCRIPT = BENCH_DIR / "on_define_domain.py"
# The console script that pip installed next to this interpreter.
PINNING_HOOK = pathlib.Path(sys.executable).parent / "pinning-hook"

HOOK_VERSION = "v1alpha3"
LARGE_VCPUS = 512
# The 512-vCPU sidecar plans against 512 host CPUs, as on a host that can
# hold such a VM; this machine has far fewer, so the set is given.
LARGE_HOST_CPUS = f"0-{LARGE_VCPUS - 1}"
CONCURRENT_CALLERS = 32

# Calls per run. They keep `make bench` within a few minutes on 2 cores.
TYPICAL_CALLS = 500
LARGE_CALLS = 150
CONCURRENT_CALLS_PER_CALLER = 10
PROCESS_CALLS = 10
WARM_UP_CALLS = 5

# A container limited to 200m CPU gets a fifth of one CPU's time.
CPU_LIMIT_SHARE = 0.2

# The same locked-down options as the sidecar's parser.
FLOOR_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


BUDGETS = (
    Budget("ratio_typical_p50", "latency ÷ floor, typical domain (p50)", 1.5, 1.2, "×"),
    Budget("ratio_large_p50", f"latency ÷ floor, {LARGE_VCPUS} vCPUs (p50)", 2.0, 1.5, "×"),
    Budget("startup_cpu", "CPU seconds to first Info", 0.35, 0.2, "s"),
    Budget("peak_rss_concurrent", f"peak RSS under {CONCURRENT_CALLERS} concurrent callers", 48.0, 40.0, "MiB"),
    Budget("speedup_vs_process", "speed-up versus a process per call", 20.0, None, "×", higher_is_better=True),
)


FIGURES = (
    Figure("startup_cpu", "start-up: CPU seconds from exec to the first Info response", "s", 3),
    Figure("startup_wall", "start-up: wall seconds to the first Info response, this machine", "s", 3),
    Figure("startup_wall_200m", "start-up: wall seconds at 200m CPU (estimate: CPU seconds ÷ 0.2)", "s", 2),
    Figure("first_call", "first OnDefineDomain after start, typical domain", "ms", 2),
    Figure("typical_p50", "OnDefineDomain, typical domain, p50", "ms", 2),
    Figure("typical_p99", "OnDefineDomain, typical domain, p99", "ms", 2),
    Figure("typical_floor_p50", "floor, typical domain, p50", "ms", 2),
    Figure("typical_floor_p99", "floor, typical domain, p99", "ms", 2),
    Figure("echo_typical_p50", "  of which echo round trip, p50", "ms", 2),
    Figure("parse_typical_p50", "  of which lxml parse of the input, p50", "ms", 3),
    Figure("serialise_typical_p50", "  of which serialisation of the output, p50", "ms", 3),
    Figure("ratio_typical_p50", "latency ÷ floor, typical domain, p50", "×", 2),
    Figure("ratio_typical_p99", "latency ÷ floor, typical domain, p99", "×", 2),
    Figure("cpu_per_call_typical", "sidecar CPU per OnDefineDomain, typical domain", "ms", 2),
    Figure("echo_cpu_per_call_typical", "echo server CPU per call, typical domain", "ms", 2),
    Figure("large_p50", f"OnDefineDomain, {LARGE_VCPUS} vCPUs all pinned, p50", "ms", 2),
    Figure("large_p99", f"OnDefineDomain, {LARGE_VCPUS} vCPUs all pinned, p99", "ms", 2),
    Figure("large_floor_p50", f"floor, {LARGE_VCPUS} vCPUs, p50", "ms", 2),
    Figure("large_floor_p99", f"floor, {LARGE_VCPUS} vCPUs, p99", "ms", 2),
    Figure("ratio_large_p50", f"latency ÷ floor, {LARGE_VCPUS} vCPUs, p50", "×", 2),
    Figure("ratio_large_p99", f"latency ÷ floor, {LARGE_VCPUS} vCPUs, p99", "×", 2),
    Figure("cpu_per_call_large", f"sidecar CPU per OnDefineDomain, {LARGE_VCPUS} vCPUs", "ms", 2),
    Figure("concurrent_p50", f"OnDefineDomain, {CONCURRENT_CALLERS} concurrent callers, p50", "ms", 2),
    Figure("concurrent_p99", f"OnDefineDomain, {CONCURRENT_CALLERS} concurrent callers, p99", "ms", 2),
    Figure("concurrent_echo_p50", f"echo round trip, {CONCURRENT_CALLERS} concurrent callers, p50", "ms", 2),
    Figure("concurrent_echo_p99", f"echo round trip, {CONCURRENT_CALLERS} concurrent callers, p99", "ms", 2),
    Figure("concurrent_throughput", f"OnDefineDomain calls per second, {CONCURRENT_CALLERS} callers", "/s", 0),
    Figure("concurrent_echo_throughput", f"echo calls per second, {CONCURRENT_CALLERS} callers", "/s", 0),
    Figure("idle_rss", "idle RSS after the first Info", "MiB", 1),
    Figure("idle_rss_anon", "  of which anonymous memory (RssAnon); the rest maps files such as libraries", "MiB", 1),
    Figure("peak_rss_concurrent", f"peak RSS (VmHWM) under {CONCURRENT_CALLERS} concurrent callers", "MiB", 1),
    Figure("rss_after_load", "RSS after the load", "MiB", 1),
    Figure("peak_rss_large", f"peak RSS (VmHWM), {LARGE_VCPUS}-vCPU sidecar", "MiB", 1),
    Figure("process_wall", "process per call: wall time per call, typical domain", "ms", 1),
    Figure("process_cpu", "process per call: CPU time per call, typical domain", "ms", 1),
    Figure("speedup_vs_process", "speed-up versus a process per call (process wall ÷ sidecar p50)", "×", 1),
)


# Statistics.


def percentile(samples: Sequence[float], percent: float) -> float:
    """Return the nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def time_call(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def interleave(calls: dict[str, Callable[[], object]], count: int) -> dict[str, list[float]]:
    """Time each call `count` times, taking them in turn, so that all see the same machine load."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            samples[name].append(time_call(call))
    return samples


def run_concurrently(call: Callable[[], object], callers: int, calls_each: int) -> tuple[list[float], float]:
    """Run `call` from `callers` threads at once; return the latencies and the wall time of the whole batch."""
    barrier = threading.Barrier(callers + 1)
    samples: list[float] = []
    errors: list[BaseException] = []

    def caller() -> None:
        barrier.wait()
        try:
            for _ in range(calls_each):
                samples.append(time_call(call))
        except BaseException as error:  # re-raised in the main thread below
            errors.append(error)

    threads = [threading.Thread(target=caller, name=f"caller-{index}") for index in range(callers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {callers} callers failed; the first error: {errors[0]!r}")
    return samples, wall


def sidecar_command(*extra: str) -> list[str]:
    return [str(PINNING_HOOK), "serve", "--socket-dir", "{socket_dir}", "--version", HOOK_VERSION, *extra]


# Inputs.


@dataclasses.dataclass(frozen=True)
class Case:
    """One OnDefineDomain request and the reply the sidecar must send."""

    domain_xml: bytes
    vmi_json: bytes
    expected: bytes


def make_case(domain_xml: bytes, vmi_json: bytes, host_cpus: frozenset[int] | None) -> Case:
    """Compute the expected reply in this process, and check that it pins something."""
    outcome = rewrite.rewrite_domain(domain_xml, vmi.parse_vmi_json(vmi_json), HostCpuSource(override=host_cpus))
    if not outcome.changed or len(outcome.problems.rejections()):
        raise RuntimeError(
            "the benchmark input must be pinned without problems on this machine; "
            f"got changed={outcome.changed}, problems={[problem.message for problem in outcome.problems]}"
        )
    return Case(domain_xml=domain_xml, vmi_json=vmi_json, expected=outcome.domain_xml)


def typical_case() -> Case:
    domain_xml = (FIXTURES_DIR / "launcher-typical.xml").read_bytes()
    vmi_json = (FIXTURES_DIR / "vmi-typical.json").read_bytes()
    return make_case(domain_xml, vmi_json, host_cpus=None)


def large_case(typical: Case) -> Case:
    """Scale the typical domain to LARGE_VCPUS vCPUs, each pinned to its own host CPU."""
    domain_xml = _replace_once(
        typical.domain_xml, b'<vcpu placement="static">2</vcpu>', f'<vcpu placement="static">{LARGE_VCPUS}</vcpu>'
    )
    domain_xml = _replace_once(
        domain_xml,
        b'<topology sockets="1" cores="2" threads="1">',
        f'<topology sockets="2" cores="{LARGE_VCPUS // 4}" threads="2">',
    )
    document = json.loads(typical.vmi_json)
    document["metadata"]["annotations"][vmi.PIN_LIST_ANNOTATION] = json.dumps(
        [f"{vcpu}-{vcpu}" for vcpu in range(LARGE_VCPUS)]
    )
    document["spec"]["domain"]["cpu"].update(sockets=2, cores=LARGE_VCPUS // 4, threads=2)
    vmi_json = json.dumps(document, separators=(",", ":")).encode()
    return make_case(domain_xml, vmi_json, host_cpus=frozenset(range(LARGE_VCPUS)))


def _replace_once(data: bytes, old: bytes, new: str) -> bytes:
    if data.count(old) != 1:
        raise RuntimeError(f"the typical fixture must contain {old.decode()!r} exactly once")
    return data.replace(old, new.encode())


# One run.


def call_on_define_domain(server: Server, case: Case) -> Callable[[], bytes]:
    client = server.client()

    def call() -> bytes:
        return client.on_define_domain(case.domain_xml, case.vmi_json, HOOK_VERSION)

    return call


def check_reply(server: Server, case: Case, expected: bytes) -> None:
    reply = call_on_define_domain(server, case)()
    if reply != expected:
        raise RuntimeError(f"{server.name} sent a reply that differs from the expected one; see {server.log.name}")


def floor_work(case: Case) -> dict[str, Callable[[], object]]:
    """The XML work no implementation can skip: parse the input, serialise the output."""
    output_tree = etree.fromstring(case.expected, FLOOR_PARSER)
    return {
        "parse": lambda: etree.fromstring(case.domain_xml, FLOOR_PARSER),
        "serialise": lambda: etree.tostring(output_tree, encoding="UTF-8"),
    }


def measure_latency(prefix: str, sidecar: Server, echo: Server, case: Case, count: int) -> dict[str, float]:
    calls = {
        "sidecar": call_on_define_domain(sidecar, case),
        "echo": call_on_define_domain(echo, case),
        **floor_work(case),
    }
    interleave(calls, WARM_UP_CALLS)
    cpu_before = {server.name: cpu_seconds(server.pid) for server in (sidecar, echo)}
    samples = interleave(calls, count)
    figures: dict[str, float] = {
        f"cpu_per_call_{prefix}": (cpu_seconds(sidecar.pid) - cpu_before[sidecar.name]) / count * 1000,
        f"echo_cpu_per_call_{prefix}": (cpu_seconds(echo.pid) - cpu_before[echo.name]) / count * 1000,
    }
    for percent in (50, 99):
        floor = sum(percentile(samples[name], percent) for name in ("echo", "parse", "serialise"))
        latency = percentile(samples["sidecar"], percent)
        figures[f"{prefix}_p{percent}"] = latency * 1000
        figures[f"{prefix}_floor_p{percent}"] = floor * 1000
        figures[f"ratio_{prefix}_p{percent}"] = latency / floor
    for name in ("echo", "parse", "serialise"):
        figures[f"{name}_{prefix}_p50"] = percentile(samples[name], 50) * 1000
    return figures


def measure_concurrency(sidecar: Server, echo: Server, case: Case) -> dict[str, float]:
    figures: dict[str, float] = {}
    total = CONCURRENT_CALLERS * CONCURRENT_CALLS_PER_CALLER
    for name, server in (("concurrent_echo", echo), ("concurrent", sidecar)):
        if server is sidecar:
            reset_peak_rss(server.pid)
        samples, wall = run_concurrently(
            call_on_define_domain(server, case), CONCURRENT_CALLERS, CONCURRENT_CALLS_PER_CALLER
        )
        figures[f"{name}_p50"] = percentile(samples, 50) * 1000
        figures[f"{name}_p99"] = percentile(samples, 99) * 1000
        figures[f"{name}_throughput"] = total / wall
    figures["peak_rss_concurrent"] = status_mib(sidecar.pid, "VmHWM")
    return figures


def measure_process_per_call(case: Case, work_dir: pathlib.Path) -> dict[str, float]:
    command = [
        sys.executable,
        str(PER_CALL_SCRIPT),
        "--vmi",
        case.vmi_json.decode(),
        "--domain",
        case.domain_xml.decode(),
    ]
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(PROCESS_CALLS):
        cpu_before = children_cpu_seconds()
        started = time.perf_counter()
        result = subprocess.run(command, cwd=work_dir, capture_output=True, timeout=60, check=True)
        walls.append(time.perf_counter() - started)
        cpus.append(children_cpu_seconds() - cpu_before)
        if result.stdout != case.expected:
            raise RuntimeError(f"{PER_CALL_SCRIPT.name} printed a domain that differs from the sidecar's reply")
    return {"process_wall": statistics.median(walls) * 1000, "process_cpu": statistics.median(cpus) * 1000}


def run_once(typical: Case, large: Case) -> dict[str, float]:
    """Start the servers, take every figure once, stop the servers."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pinning-hook-bench-") as temporary:
        work_dir = pathlib.Path(temporary)
        servers: list[Server] = []
        try:
            # Start-up first, one server at a time, so that no other
            # process of the benchmark competes for the CPUs.
            sidecar = start_server("sidecar", sidecar_command(), work_dir)
            servers.append(sidecar)
            figures["startup_wall"] = sidecar.wait_until_answering(sidecar.client().info)
            figures["startup_cpu"] = cpu_seconds(sidecar.pid)
            figures["startup_wall_200m"] = figures["startup_cpu"] / CPU_LIMIT_SHARE
            figures["idle_rss"] = status_mib(sidecar.pid, "VmRSS")
            figures["idle_rss_anon"] = status_mib(sidecar.pid, "RssAnon")
            figures["first_call"] = time_call(call_on_define_domain(sidecar, typical)) * 1000

            large_sidecar = start_server("sidecar-large", sidecar_command("--host-cpus", LARGE_HOST_CPUS), work_dir)
            servers.append(large_sidecar)
            large_sidecar.wait_until_answering(large_sidecar.client().info)
            echo = start_server("echo", [sys.executable, str(ECHO_SERVER), "{socket_path}"], work_dir)
            servers.append(echo)
            # The echo server serves no Info, so OnDefineDomain is the probe.
            echo.wait_until_answering(call_on_define_domain(echo, typical))

            check_reply(sidecar, typical, typical.expected)
            check_reply(large_sidecar, large, large.expected)
            check_reply(echo, typical, typical.domain_xml)

            figures.update(measure_latency("typical", sidecar, echo, typical, TYPICAL_CALLS))
            figures.update(measure_latency("large", large_sidecar, echo, large, LARGE_CALLS))
            figures["peak_rss_large"] = status_mib(large_sidecar.pid, "VmHWM")
            figures.update(measure_concurrency(sidecar, echo, typical))
            figures["rss_after_load"] = status_mib(sidecar.pid, "VmRSS")
            figures.update(measure_process_per_call(typical, work_dir))
            figures["speedup_vs_process"] = figures["process_wall"] / figures["typical_p50"]
        finally:
            for server in servers:
                server.stop()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the sidecar's latency, memory and start-up.")
    parser.add_argument("--output", type=pathlib.Path, help="Markdown page whose marked block gets the results")
    parser.add_argument("--runs", type=int, default=7, help="repetitions of every figure (default: %(default)s)")
    arguments = parser.parse_args(argv)
    if arguments.runs < 1:
        parser.error("--runs must be at least 1")
    if not PINNING_HOOK.exists():
        parser.error(f"{PINNING_HOOK} is missing; install the package into this interpreter's environment first")

    typical = typical_case()
    large = large_case(typical)
    load_before = os.getloadavg()
    started = time.perf_counter()
    runs = []
    for index in range(arguments.runs):
        print(f"run {index + 1} of {arguments.runs}", file=sys.stderr, flush=True)
        runs.append(run_once(typical, large))
    elapsed = time.perf_counter() - started

    interpreter = os.path.relpath(sys.executable, REPO_ROOT)
    command = shlex.join([interpreter, "bench/bench.py", *(argv if argv is not None else sys.argv[1:])])
    summary = (
        f"`{command}` took {elapsed:.0f} s for {len(runs)} run(s). Each run made {TYPICAL_CALLS} "
        f"typical calls, {LARGE_CALLS} calls with {LARGE_VCPUS} vCPUs, {CONCURRENT_CALLERS} × "
        f"{CONCURRENT_CALLS_PER_CALLER} concurrent calls and {PROCESS_CALLS} per-call processes, after "
        f"{WARM_UP_CALLS} warm-up calls of each kind."
    )
    block = render(
        runs,
        figures=FIGURES,
        budgets=BUDGETS,
        summary=summary,
        load_before=load_before,
        load_after=os.getloadavg(),
    )
    if arguments.output is not None:
        write_results(arguments.output, block)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
