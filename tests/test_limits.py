"""Size limits on both sides: the domain XML, the VMI, and gRPC's receive limit.

These run against the real `pinning-hook serve`, because the gRPC limit is
an option of the server that `serve` builds.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from collections.abc import Iterator

import grpc
import pytest
from conftest import GOLDEN_DIR, make_vmi, vmi_bytes
from launcher_client import decode_fields, encode_bytes_fields
from sidecar import Sidecar

from pinning_hook.domainxml import MAX_DOMAIN_XML_BYTES
from pinning_hook.server import MAX_MESSAGE_BYTES
from pinning_hook.vmi import MAX_VMI_JSON_BYTES

DOMAIN = (GOLDEN_DIR / "launcher-4vcpu.xml").read_bytes()
PINS = ["0-2", "1-3"]


def domain_of_size(size: int) -> bytes:
    """The 4-vCPU launcher domain, padded with a comment to exactly `size` bytes."""
    head, tail = DOMAIN.rsplit(b"</domain>", 1)
    frame = len(head) + len(b"<!---->") + len(b"</domain>") + len(tail)
    return head + b"<!--" + b"x" * (size - frame) + b"-->" + b"</domain>" + tail


def vmi_of_size(size: int) -> bytes:
    """A pinned VMI, padded with an annotation to exactly `size` bytes of JSON."""
    document = make_vmi(PINS, cores=4, annotations={"padding": ""})
    padding = size - len(json.dumps(document).encode())
    document["metadata"]["annotations"]["padding"] = "x" * padding
    return json.dumps(document).encode()


def call(socket_path: pathlib.Path, request: bytes) -> tuple[grpc.StatusCode, str, bytes]:
    """Call OnDefineDomain with a client that, unlike virt-launcher's, accepts any response size."""
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(f"unix:{socket_path}", options=options) as channel:
        method = channel.unary_unary(
            "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        try:
            response = method(request, timeout=60)
        except grpc.RpcError as error:
            return error.code(), error.details() or "", b""
    fields = dict(decode_fields(response))
    domain = fields.get(1, b"")
    return grpc.StatusCode.OK, "", domain if isinstance(domain, bytes) else b""


@pytest.fixture(scope="module")
def socket_path() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="pinning-hook-") as directory:
        with Sidecar(pathlib.Path(directory), "--host-cpus", "0-3") as running:
            yield running.socket_path


def test_domain_at_limit_accepted(socket_path: pathlib.Path) -> None:
    domain = domain_of_size(MAX_DOMAIN_XML_BYTES)
    assert len(domain) == MAX_DOMAIN_XML_BYTES

    code, details, output = call(socket_path, encode_bytes_fields({1: domain, 2: vmi_bytes(PINS, cores=4)}))

    assert code == grpc.StatusCode.OK, details
    assert b'<vcpupin vcpu="1" cpuset="3"></vcpupin>' in output


def test_domain_above_limit_rejected(socket_path: pathlib.Path) -> None:
    domain = domain_of_size(MAX_DOMAIN_XML_BYTES + 1)

    code, details, _ = call(socket_path, encode_bytes_fields({1: domain, 2: vmi_bytes(PINS, cores=4)}))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the domain XML is {MAX_DOMAIN_XML_BYTES + 1} bytes, above the limit of {MAX_DOMAIN_XML_BYTES}" in details


def test_vmi_at_limit_accepted(socket_path: pathlib.Path) -> None:
    vmi = vmi_of_size(MAX_VMI_JSON_BYTES)
    assert len(vmi) == MAX_VMI_JSON_BYTES

    code, details, output = call(socket_path, encode_bytes_fields({1: DOMAIN, 2: vmi}))

    assert code == grpc.StatusCode.OK, details
    assert b'<vcpupin vcpu="1" cpuset="3"></vcpupin>' in output


def test_vmi_above_limit_rejected(socket_path: pathlib.Path) -> None:
    vmi = vmi_of_size(MAX_VMI_JSON_BYTES + 1)

    code, details, _ = call(socket_path, encode_bytes_fields({1: DOMAIN, 2: vmi}))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the VMI is {MAX_VMI_JSON_BYTES + 1} bytes, above the limit of {MAX_VMI_JSON_BYTES}" in details


def request_of_size(size: int) -> bytes:
    """An OnDefineDomainParams message of exactly `size` bytes, almost all of it domain XML."""
    vmi = vmi_bytes(PINS, cores=4)
    length = size - len(encode_bytes_fields({2: vmi})) - 1 - 4
    request = encode_bytes_fields({1: b"x" * length, 2: vmi})
    assert len(request) == size, "the domain's length prefix is not 4 bytes long"
    return request


def test_message_at_grpc_limit_reaches_handler(socket_path: pathlib.Path) -> None:
    """gRPC passes the largest message on; the domain XML limit then rejects it."""
    code, details, _ = call(socket_path, request_of_size(MAX_MESSAGE_BYTES))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "above the limit" in details


def test_message_above_grpc_limit_exhausted(socket_path: pathlib.Path) -> None:
    code, details, _ = call(socket_path, request_of_size(MAX_MESSAGE_BYTES + 1))

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_MESSAGE_BYTES) in details


def test_limits_hold_together() -> None:
    """The gRPC limit leaves room for the largest domain and VMI in one request."""
    largest = encode_bytes_fields({1: b"x" * MAX_DOMAIN_XML_BYTES, 2: b"x" * MAX_VMI_JSON_BYTES})

    assert len(largest) <= MAX_MESSAGE_BYTES
