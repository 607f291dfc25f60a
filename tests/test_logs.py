"""The sidecar's log as operators read it: JSON lines from the real server.

Every line is one JSON object with KubeVirt's keys. Each RPC logs one info
line with its outcome and duration, each caught error logs a line, and
repeated problems within one call are counted instead of printed one by one.
"""

from __future__ import annotations

import json
import pathlib
import re

import grpc
import pytest
from conftest import vmi_bytes
from launcher_client import encode_bytes_fields
from sidecar import Sidecar
from test_server import pins_in

from pinning_hook.logs import PROBLEMS_LOGGED_PER_CODE

UID = "3b0e9ae2-55a5-4a7c-9d62-0c1f6a1c4e21"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def call_every_rpc(sidecar: Sidecar, domain: bytes) -> None:
    """Call Info, OnDefineDomain (accepted and rejected), PreCloudInitIso and Shutdown once each."""
    client = sidecar.client()
    client.info()
    # The version is given, because picking it would call Info again.
    client.on_define_domain(domain, vmi_bytes(["0-2", "1-9"], cores=4), "v1alpha3")
    with pytest.raises(grpc.RpcError):
        client.on_define_domain(b"<domain", vmi_bytes(["0-2"], cores=4), "v1alpha3")

    request = encode_bytes_fields({1: b"{}", 2: vmi_bytes(None), 3: b"{}"})
    with grpc.insecure_channel(f"unix:{sidecar.socket_path}") as channel:
        channel.unary_unary(
            "/kubevirt.hooks.v1alpha3.Callbacks/PreCloudInitIso",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )(request, timeout=5)
    client.shutdown()


@pytest.fixture
def records(tmp_path: pathlib.Path, launcher_domain: bytes) -> list[dict[str, object]]:
    sidecar = Sidecar(tmp_path, "--host-cpus", "0-3").start()
    call_every_rpc(sidecar, launcher_domain)
    assert sidecar.wait() == 0
    return [json.loads(line) for line in sidecar.stderr.splitlines()]


def test_every_line_carries_base_keys(records: list[dict[str, object]]) -> None:
    for record in records:
        assert record["component"] == "pinning-hook"
        assert record["level"] in {"info", "warning", "error"}
        assert isinstance(record["msg"], str)
        assert TIMESTAMP.fullmatch(str(record["timestamp"]))


def test_vmi_lines_carry_identity_and_hook_point(records: list[dict[str, object]]) -> None:
    vmi_lines = [record for record in records if record.get("name")]
    messages = [str(record["msg"]) for record in vmi_lines]

    assert len(messages) == 4
    assert messages[0] == "impossible to pin 9 on host where we have only 4"
    assert messages[1] == "OnDefineDomain completed"
    assert messages[2].startswith("OnDefineDomain rejected invalid input: the domain XML is not well-formed")
    assert messages[3] == "OnDefineDomain failed"
    for record in vmi_lines:
        assert record["namespace"] == "default"
        assert record["name"] == "fedora-pinned"
        assert record["uid"] == UID
        assert record["hookPoint"] == "OnDefineDomain"


def test_each_rpc_logs_one_outcome_line(records: list[dict[str, object]]) -> None:
    outcome_lines = [record for record in records if "outcome" in record]

    assert [(record["msg"], record["outcome"]) for record in outcome_lines] == [
        ("Info returned", "ok"),
        ("OnDefineDomain completed", "pinned"),
        ("OnDefineDomain failed", "invalid_argument"),
        ("PreCloudInitIso returned its input unchanged", "unchanged"),
        ("Shutdown requested by virt-launcher", "stopping"),
    ]
    for record in outcome_lines:
        assert record["level"] == "info"
        assert isinstance(record["durationMs"], float)


def test_completed_line_names_available_cpus(records: list[dict[str, object]]) -> None:
    completed = next(record for record in records if record["msg"] == "OnDefineDomain completed")

    assert completed["pins"] == "0:2"
    assert completed["availableCpus"] == "0-3"
    assert completed["problems"] == 1


def test_rejected_request_logs_error(records: list[dict[str, object]]) -> None:
    errors = [record for record in records if record["level"] == "error"]

    assert len(errors) == 1
    assert str(errors[0]["msg"]).startswith("OnDefineDomain rejected invalid input: the domain XML is not well-formed")


def test_huge_pin_list_logs_summary(tmp_path: pathlib.Path, launcher_domain: bytes) -> None:
    # 100,000 entries: two good ones, then three kinds of problem in bulk.
    out_of_range = [f"{vcpu}-0" for vcpu in range(4, 33_337)]
    negative = ["-1-2"] * 33_333
    malformed = [f"x{index}" for index in range(33_332)]
    pin_list = ["0-2", "1-3", *out_of_range, *negative, *malformed]
    assert len(pin_list) == 100_000

    with Sidecar(tmp_path, "--host-cpus", "0-3") as sidecar:
        output = sidecar.client().on_define_domain(launcher_domain, vmi_bytes(pin_list, cores=4))
    records = sidecar.log_records()
    warnings = [record for record in records if record["level"] == "warning" and "problem" in record]
    summaries = {record["problem"]: record["suppressed"] for record in warnings if "suppressed" in record}
    completed = next(record for record in records if record["msg"] == "OnDefineDomain completed")

    assert pins_in(output) == {0: "2", 1: "3"}
    # Per kind: the first few one by one, then one line with the count.
    assert len(warnings) == 3 * (PROBLEMS_LOGGED_PER_CODE + 1)
    assert summaries == {
        "vcpu-out-of-range": 33_333 - PROBLEMS_LOGGED_PER_CODE,
        "negative-number": 33_333 - PROBLEMS_LOGGED_PER_CODE,
        "invalid-entry": 33_332 - PROBLEMS_LOGGED_PER_CODE,
    }
    assert completed["problems"] == 99_998
    assert len(records) < 30
    assert len(sidecar.stderr) < 20_000
