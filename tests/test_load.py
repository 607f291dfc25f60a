"""The real sidecar under load: a thousand concurrent mixed calls, and a pin list of 100,000 entries.

Both loops are bounded in count, and each call in time by virt-launcher's
1 min deadline.
"""

from __future__ import annotations

import json
import pathlib
import random
import tempfile
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from conftest import GOLDEN_DIR, vmi_bytes
from launcher_client import LauncherClient
from lxml import etree
from sidecar import Sidecar

from pinning_hook.logs import PROBLEMS_LOGGED_PER_CODE

DOMAIN = (GOLDEN_DIR / "launcher-4vcpu.xml").read_bytes()
VERSIONS = ("v1alpha1", "v1alpha2", "v1alpha3")
CALLS = 1200
CLIENT_THREADS = 32

MALFORMED = [
    (b"<domain", vmi_bytes(["0-1"]), "the domain XML is not well-formed"),
    (b"<domain><name>x</name></domain>", vmi_bytes(["0-1"]), "has no <vcpu> element"),
    (DOMAIN, b"{not json", "the VMI is not valid JSON"),
    (DOMAIN, vmi_bytes(None, annotations={"cpu-pinning.vm.kubevirt.io/pinning": '"0-1"'}), "JSON list of strings"),
]


def pins_in(domain_xml: bytes) -> dict[int, str]:
    root = etree.fromstring(domain_xml)
    return {int(pin.get("vcpu")): pin.get("cpuset") for pin in root.iterfind("cputune/vcpupin")}


def good_call(generator: random.Random) -> tuple[list[str], dict[int, str]]:
    """Draw a pin list for the 4-vCPU domain on host CPUs 0-3, with the pins it must give."""
    vcpus = generator.sample(range(4), generator.randint(0, 4))
    entries = [f"{vcpu}-{generator.randrange(4)}" for vcpu in vcpus]
    expected = {vcpu: entry.split("-")[1] for vcpu, entry in zip(vcpus, entries, strict=True)}
    # Rejected entries that name no vCPU of the domain change no pin, but
    # make the sidecar log warnings.
    if generator.random() < 0.3:
        entries.append(generator.choice(["9-1", "x", "-1-2"]))
    return entries, expected


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    with tempfile.TemporaryDirectory(prefix="pinning-hook-") as directory:
        with Sidecar(pathlib.Path(directory), "--host-cpus", "0-3") as running:
            yield running


def test_concurrent_mixed_calls_correct(sidecar: Sidecar) -> None:
    generator = random.Random(1200)
    calls = {index: good_call(generator) for index in range(CALLS) if index % 3 != 0}
    client = LauncherClient(sidecar.socket_path)

    def run(index: int) -> str:
        version = VERSIONS[index % len(VERSIONS)]
        if index % 3 == 0:
            domain, vmi, fragment = MALFORMED[index % len(MALFORMED)]
            try:
                client.on_define_domain(domain, vmi, version)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (index, error)
                assert fragment in error.details(), (index, error.details())
                return "rejected"
            raise AssertionError(f"call {index}: malformed request accepted")
        entries, expected = calls[index]
        output = client.on_define_domain(DOMAIN, vmi_bytes(entries, cores=4), version)
        assert pins_in(output) == expected, (index, entries)
        return "pinned" if expected else "unchanged"

    with futures.ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        outcomes = list(pool.map(run, range(CALLS)))
    records = [json.loads(line) for line in sidecar.read_log().splitlines()]

    assert outcomes.count("rejected") == CALLS // 3
    assert len(outcomes) == CALLS
    assert sidecar.client().info().name == "pinning-hook"
    # Each call logs its outcome exactly once, on a line of its own.
    assert sum(record["msg"] == "OnDefineDomain completed" for record in records) == CALLS - CALLS // 3
    assert sum(record["msg"] == "OnDefineDomain failed" for record in records) == CALLS // 3


def flood_entries() -> tuple[list[str], dict[int, str]]:
    """100,000 entries: mostly vCPUs the domain lacks, with garbage and negative numbers, then 4 good ones."""
    entries = []
    for index in range(100_000 - 4):
        kind = index % 10
        if kind < 8:
            entries.append(f"{index + 4}-{index % 16384}")
        elif kind == 8:
            entries.append(f"entry {index}")
        else:
            entries.append(f"-{index}-1")
    entries += ["0-2", " 1-3 ", "2:4-7,^6", "3-16383"]
    return entries, {0: "2", 1: "3", 2: "4-5,7", 3: "16383"}


def test_flood_answered_and_summarised(socket_dir: pathlib.Path) -> None:
    """Formatting 16384 host CPUs for each of 80,000 entries would outlast virt-launcher's deadline."""
    entries, expected = flood_entries()

    with Sidecar(socket_dir, "--host-cpus", "0-16383") as running:
        output = running.client().on_define_domain(DOMAIN, vmi_bytes(entries, cores=4))
    records = running.log_records()
    warnings = [record for record in records if record["level"] == "warning" and "problem" in record]
    completed = next(record for record in records if record["msg"] == "OnDefineDomain completed")

    assert pins_in(output) == expected
    assert completed["problems"] == len(entries) - 4
    codes = {record["problem"] for record in warnings}
    assert codes == {"vcpu-out-of-range", "invalid-entry", "negative-number"}
    assert len(warnings) <= len(codes) * (PROBLEMS_LOGGED_PER_CODE + 1)
    assert len(warnings) < 100
    # Every problem is either logged or counted in a summary line.
    assert sum(record.get("suppressed", 1) for record in warnings) == completed["problems"]
