"""Malformed requests get INVALID_ARGUMENT naming the problem; only a bug gets INTERNAL.

The servicer runs on a real gRPC server in the test process (inprocess.py),
so these tests can also give it a host-CPU source that fails.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import GOLDEN_DIR, PIN_LIST_ANNOTATION, make_vmi, vmi_bytes
from inprocess import call_raw, recorded_logs, serve_in_process
from launcher_client import LauncherClient, encode_bytes_fields

from pinning_hook import server
from pinning_hook.host import HostCpuSource
from pinning_hook.topology import HostTopology

DOMAIN = (GOLDEN_DIR / "launcher-4vcpu.xml").read_bytes()
SMALL_DOMAIN = b"<domain><vcpu>2</vcpu></domain>"
ON_DEFINE_DOMAIN = "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain"


def vmi_with(path: str, value: Any) -> bytes:
    """Build a pinned VMI as JSON, with `value` set at the dotted `path`."""
    document = make_vmi(["0-1"])
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return json.dumps(document).encode()


def annotation(value: object) -> bytes:
    """Build a VMI whose pin-list annotation is `value`, of any JSON type."""
    document = make_vmi(None)
    document["metadata"]["annotations"][PIN_LIST_ANNOTATION] = value
    return json.dumps(document).encode()


def resources(value: object) -> bytes:
    """Build a pinned VMI without a CPU topology, so that its resources give the core count."""
    document = make_vmi(["0-1"])
    document["spec"]["domain"] = {"resources": value}
    return json.dumps(document).encode()


DOMAIN_CASES = [
    ("broken-xml", b"<domain", "the domain XML is not well-formed"),
    ("empty-xml", b"", "the domain XML is empty"),
    ("blank-xml", b" \n\t", "the domain XML is empty"),
    ("binary-bytes", bytes(range(256)), "the domain XML is not well-formed"),
    ("plain-text", b"hello", "the domain XML is not well-formed"),
    ("json-not-xml", b'{"domain": 1}', "the domain XML is not well-formed"),
    ("wrong-root", b"<vm><vcpu>2</vcpu></vm>", "root element is <vm>, expected <domain>"),
    ("no-vcpu", b"<domain><name>x</name></domain>", "has no <vcpu> element"),
    ("vcpu-word", b"<domain><vcpu>two</vcpu></domain>", "<vcpu> is 'two'"),
    ("vcpu-zero", b"<domain><vcpu>0</vcpu></domain>", "<vcpu> is '0', expected a positive number"),
    ("vcpu-negative", b"<domain><vcpu>-2</vcpu></domain>", "<vcpu> is '-2'"),
    ("vcpu-arabic-digit", "<domain><vcpu>٣</vcpu></domain>".encode(), "<vcpu> is '٣'"),
    ("vcpu-5000-digits", b"<domain><vcpu>" + b"9" * 5000 + b"</vcpu></domain>", "expected a positive number of vCPUs"),
    ("vcpu-above-uint", b"<domain><vcpu>4294967296</vcpu></domain>", "<vcpu> is '4294967296'"),
    (
        "vcpupin-vcpu-word",
        b'<domain><vcpu>2</vcpu><cputune><vcpupin vcpu="x" cpuset="1"/></cputune></domain>',
        "<vcpupin vcpu='x'>, expected a vCPU number",
    ),
    (
        "vcpupin-vcpu-5000-digits",
        b'<domain><vcpu>2</vcpu><cputune><vcpupin vcpu="' + b"9" * 5000 + b'" cpuset="1"/></cputune></domain>',
        "expected a vCPU number",
    ),
    (
        "vcpupin-bad-cpuset",
        b'<domain><vcpu>2</vcpu><cputune><vcpupin vcpu="0" cpuset="1-"/></cputune></domain>',
        'vcpupin vcpu="0"> has an invalid cpuset',
    ),
    (
        "vcpupin-twice",
        b'<domain><vcpu>2</vcpu><cputune><vcpupin vcpu="0" cpuset="1"/><vcpupin vcpu="0" cpuset="2"/></cputune>'
        b"</domain>",
        'two <vcpupin vcpu="0">',
    ),
    ("depth-300", b"<domain><vcpu>2</vcpu>" + b"<a>" * 300 + b"</a>" * 300 + b"</domain>", "Excessive depth"),
]

VMI_CASES = [
    ("vmi-empty", b"", "the VMI is empty"),
    ("vmi-broken-json", b"{not json", "the VMI is not valid JSON"),
    ("vmi-not-utf8", b'{"a": "\xff"}', "the VMI is not UTF-8: invalid byte at offset 7"),
    ("vmi-array", b"[]", "the VMI must be a JSON object, not a JSON array"),
    ("vmi-null", b"null", "the VMI must be a JSON object, not a JSON null"),
    ("vmi-string", b'"vmi"', "the VMI must be a JSON object, not a JSON string"),
    ("vmi-nested-100000", b"[" * 100_000, "the VMI nests JSON arrays or objects too deeply"),
    ("vmi-number-5000-digits", b'{"a": ' + b"1" * 5000 + b"}", "the VMI contains a JSON number with too many digits"),
    ("metadata-array", vmi_with("metadata", []), "metadata must be a JSON object"),
    ("annotations-string", vmi_with("metadata.annotations", "x"), "metadata.annotations must be a JSON object"),
    ("annotations-array", vmi_with("metadata.annotations", []), "metadata.annotations must be a JSON object"),
    ("annotations-zero", vmi_with("metadata.annotations", 0), "metadata.annotations must be a JSON object"),
    ("annotations-false", vmi_with("metadata.annotations", False), "metadata.annotations must be a JSON object"),
    ("name-number", vmi_with("metadata.name", 7), "metadata.name must be a string, not a JSON number"),
    ("namespace-array", vmi_with("metadata.namespace", ["a"]), "metadata.namespace must be a string"),
    ("uid-object", vmi_with("metadata.uid", {}), "metadata.uid must be a string"),
    (
        "annotation-number",
        annotation(3),
        f"the annotation {PIN_LIST_ANNOTATION} must be a string",
    ),
    ("annotation-not-json", annotation("0-2, 1-3"), f"the annotation {PIN_LIST_ANNOTATION} is not valid JSON"),
    (
        "annotation-object",
        annotation('{"0": 2}'),
        'must be a JSON list of strings, such as ["0-2", "1-3"], not a JSON object',
    ),
    ("annotation-string", annotation('"0-2"'), "not a JSON string"),
    ("annotation-item-number", annotation("[0, 2]"), "but item 0 is a JSON number"),
    ("annotation-item-null", annotation('["0-2", null]'), "but item 1 is a JSON null"),
    ("annotation-nested-100000", annotation("[" * 100_000), "nests JSON arrays or objects too deeply"),
    ("annotation-number-5000-digits", annotation("[" + "1" * 5000 + "]"), "a JSON number with too many digits"),
    ("field-pinning-string", vmi_with("spec.domain.cpu.pinning", "0-2"), "spec.domain.cpu.pinning must be"),
    ("spec-string", vmi_with("spec", "x"), "spec must be a JSON object"),
    ("domain-array", vmi_with("spec.domain", []), "spec.domain must be a JSON object"),
    ("cpu-false", vmi_with("spec.domain.cpu", False), "spec.domain.cpu must be a JSON object"),
    ("cores-string", vmi_with("spec.domain.cpu.cores", "2"), "spec.domain.cpu.cores must be a positive integer"),
    ("cores-zero", vmi_with("spec.domain.cpu.cores", 0), "spec.domain.cpu.cores must be a positive integer"),
    ("cores-boolean", vmi_with("spec.domain.cpu.cores", True), "spec.domain.cpu.cores must be a positive integer"),
    ("cores-fraction", vmi_with("spec.domain.cpu.cores", 1.5), "spec.domain.cpu.cores must be a positive integer"),
    ("sockets-negative", vmi_with("spec.domain.cpu.sockets", -1), "spec.domain.cpu.sockets must be"),
    ("max-sockets-string", vmi_with("spec.domain.cpu.maxSockets", "4"), "spec.domain.cpu.maxSockets must be"),
    (
        "cpu-quantity-word",
        resources({"limits": {"cpu": "two"}}),
        "spec.domain.resources.limits.cpu 'two' is not a CPU quantity",
    ),
    (
        "cpu-quantity-400-digits",
        resources({"requests": {"cpu": "1" * 400}}),
        "is too large for a CPU count",
    ),
    ("resources-array", resources([]), "spec.domain.resources must be a JSON object"),
    ("limits-string", resources({"limits": "2"}), "spec.domain.resources.limits must be a JSON object"),
    (
        "template-metadata-string",
        json.dumps({"kind": "VirtualMachine", "spec": {"template": {"metadata": "x"}}}).encode(),
        "spec.template.metadata must be a JSON object",
    ),
]

CASES = [(case_id, domain, vmi_bytes(["0-1"]), fragment) for case_id, domain, fragment in DOMAIN_CASES] + [
    (case_id, SMALL_DOMAIN, vmi, fragment) for case_id, vmi, fragment in VMI_CASES
]


@pytest.fixture
def hook(socket_dir: pathlib.Path) -> Iterator[LauncherClient]:
    with serve_in_process(socket_dir) as socket_path:
        yield LauncherClient(socket_path)


@pytest.mark.parametrize(("domain", "vmi", "fragment"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_malformed_request_rejected(hook: LauncherClient, domain: bytes, vmi: bytes, fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        hook.on_define_domain(domain, vmi, "v1alpha3")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in raised.value.details()
    assert raised.value.details().startswith("pinning-hook: ")
    assert len(raised.value.details()) < server.MAX_ERROR_TEXT_LENGTH + 100


def test_null_objects_read_as_absent(hook: LauncherClient) -> None:
    """Go's encoding/json reads null into a map as empty, so null is no error."""
    vmi = make_vmi(["0-1"])
    vmi["spec"]["domain"]["cpu"] = None
    vmi["spec"]["domain"]["resources"] = None

    output = hook.on_define_domain(DOMAIN, json.dumps(vmi).encode(), "v1alpha3")

    assert b'<vcpupin vcpu="0" cpuset="1">' in output


@pytest.mark.parametrize(
    ("domain", "fragment"),
    [
        (b"<" + b"a" * 40_000 + b"/>", "root element is <aaaa"),
        (b'<domain xmlns="' + b"u" * 1_000_000 + b'"><vcpu>1</vcpu></domain>', "root element is <{uuuu"),
    ],
    ids=["long-root-name", "long-namespace"],
)
def test_long_error_text_cut(hook: LauncherClient, domain: bytes, fragment: str) -> None:
    """An error that quotes a huge value is cut; uncut, grpc drops it as too large."""
    with recorded_logs() as records, pytest.raises(grpc.RpcError) as raised:
        hook.on_define_domain(domain, vmi_bytes(["0-1"]), "v1alpha3")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in raised.value.details()
    assert "characters)" in raised.value.details()
    assert len(raised.value.details()) < server.MAX_ERROR_TEXT_LENGTH + 100
    assert all(len(record.getMessage()) < server.MAX_ERROR_TEXT_LENGTH + 100 for record in records)


@pytest.mark.parametrize(
    ("method", "request_bytes"),
    [
        (ON_DEFINE_DOMAIN, b"\xff\xff\xff"),
        (ON_DEFINE_DOMAIN, b"\x0a\x05ab"),
        ("/kubevirt.hooks.v1alpha2.Callbacks/PreCloudInitIso", b"\x12\xff"),
        ("/kubevirt.hooks.info.Info/Info", b"\x0f"),
        ("/kubevirt.hooks.v1alpha3.Callbacks/Shutdown", b"\x0a\x80"),
    ],
    ids=["corrupt", "truncated-field", "pre-cloud-init-iso", "info", "shutdown"],
)
def test_undecodable_request_rejected(socket_dir: pathlib.Path, method: str, request_bytes: bytes) -> None:
    with serve_in_process(socket_dir) as socket_path:
        code, details, _ = call_raw(socket_path, method, request_bytes)
        info_code, _, _ = call_raw(socket_path, "/kubevirt.hooks.info.Info/Info", b"")

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "the request cannot be decoded" in details
    assert info_code == grpc.StatusCode.OK


class BrokenHostSource(HostCpuSource):
    """A host-CPU source that fails with an error that no code expects."""

    def read(self) -> tuple[frozenset[int], HostTopology]:
        raise RuntimeError("host CPU source broke")


class FailingHostServicer(server.HookServicer):
    """A servicer whose host-CPU source is broken."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host = BrokenHostSource()


def test_bug_gives_internal_and_serving_continues(socket_dir: pathlib.Path) -> None:
    with recorded_logs() as records, serve_in_process(socket_dir, FailingHostServicer) as socket_path:
        client = LauncherClient(socket_path)
        with pytest.raises(grpc.RpcError) as raised:
            client.on_define_domain(DOMAIN, vmi_bytes(["0-1"]), "v1alpha3")
        # Later calls that need no host CPUs still succeed.
        unchanged = client.on_define_domain(DOMAIN, vmi_bytes(None), "v1alpha3")
        info = client.info()

    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "internal error" in raised.value.details()
    assert "host CPU source broke" not in raised.value.details()
    assert unchanged == DOMAIN
    assert info.name == "pinning-hook"
    with_traceback = [record for record in records if record.exc_info is not None]
    assert len(with_traceback) == 1
    assert with_traceback[0].exc_info[0] is RuntimeError
    assert "keeps serving" in with_traceback[0].getMessage()


def test_raw_request_fields_reach_rewrite(socket_dir: pathlib.Path) -> None:
    """The hand-encoded request that virt-launcher sends is decoded as before."""
    request = encode_bytes_fields({1: DOMAIN, 2: vmi_bytes(["0-2", "1-3"], cores=4)})
    with serve_in_process(socket_dir) as socket_path:
        code, _, response = call_raw(socket_path, ON_DEFINE_DOMAIN, request)

    assert code == grpc.StatusCode.OK
    assert b'<vcpupin vcpu="1" cpuset="3">' in response
