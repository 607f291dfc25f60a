"""The sidecar over real gRPC on a unix socket, driven like virt-launcher drives it.

The client in tools/launcher_client.py encodes the protobuf messages by hand
from the wire format, so these tests also check that proto/ matches
KubeVirt's field numbers.
"""

from __future__ import annotations

import pathlib
import signal
import socket
import stat
import subprocess
import sys

import grpc
import pytest
from conftest import vmi_bytes
from lxml import etree
from sidecar import Sidecar

VERSIONS = ["v1alpha1", "v1alpha2", "v1alpha3"]


def pins_in(domain_xml: bytes) -> dict[int, str]:
    root = etree.fromstring(domain_xml)
    return {int(pin.get("vcpu")): pin.get("cpuset") for pin in root.iterfind("cputune/vcpupin")}


@pytest.fixture
def sidecar(tmp_path: pathlib.Path) -> Sidecar:
    with Sidecar(tmp_path, "--host-cpus", "0-3") as running:
        yield running


def test_info_offers_all_versions(sidecar: Sidecar) -> None:
    info = sidecar.client().info()

    assert info.name == "pinning-hook"
    assert info.versions == ("v1alpha3", "v1alpha2", "v1alpha1")
    assert [name for name, _ in info.hook_points] == ["OnDefineDomain", "Shutdown"]


def test_info_offers_only_requested_version(tmp_path: pathlib.Path) -> None:
    with Sidecar(tmp_path, "--version", "v1alpha2", "--host-cpus", "0-3") as running:
        info = running.client().info()

    assert info.versions == ("v1alpha2",)
    assert [name for name, _ in info.hook_points] == ["OnDefineDomain"]


def test_launcher_picks_newest_version(sidecar: Sidecar) -> None:
    assert sidecar.client().pick_version() == "v1alpha3"


@pytest.mark.parametrize("version", VERSIONS)
def test_pins_applied_on_every_version(sidecar: Sidecar, launcher_domain: bytes, version: str) -> None:
    output = sidecar.client().on_define_domain(launcher_domain, vmi_bytes(["0-2", "1-3"], cores=4), version)

    assert pins_in(output) == {0: "2", 1: "3"}


@pytest.mark.parametrize("version", VERSIONS)
def test_partial_list_leaves_vcpu_floating(sidecar: Sidecar, launcher_domain: bytes, version: str) -> None:
    output = sidecar.client().on_define_domain(launcher_domain, vmi_bytes(["0-2"], cores=4), version)

    assert pins_in(output) == {0: "2"}


@pytest.mark.parametrize("version", VERSIONS)
def test_no_pin_list_returns_same_bytes(sidecar: Sidecar, launcher_domain: bytes, version: str) -> None:
    output = sidecar.client().on_define_domain(launcher_domain, vmi_bytes(None), version)

    assert output == launcher_domain


@pytest.mark.parametrize("version", ["v1alpha2", "v1alpha3"])
def test_pre_cloud_init_iso_unchanged(sidecar: Sidecar, version: str) -> None:
    from launcher_client import decode_fields, encode_bytes_fields

    request = encode_bytes_fields({1: b'{"userData":"x"}', 2: vmi_bytes(None), 3: b'{"dataSource":"NoCloud"}'})
    with grpc.insecure_channel(f"unix:{sidecar.socket_path}") as channel:
        call = channel.unary_unary(
            f"/kubevirt.hooks.{version}.Callbacks/PreCloudInitIso",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        response = dict(decode_fields(call(request, timeout=5)))

    assert response == {1: b'{"userData":"x"}', 3: b'{"dataSource":"NoCloud"}'}


def test_three_messages_logged_verbatim(tmp_path: pathlib.Path, launcher_domain: bytes) -> None:
    with Sidecar(tmp_path, "--host-cpus", "0-3") as running:
        for version in VERSIONS:
            output = running.client().on_define_domain(
                launcher_domain, vmi_bytes(["-1-2", "0-7", "9-1", "1-3"], cores=4), version
            )
            assert pins_in(output) == {1: "3"}
    running_records = running.log_records()

    warnings = [record for record in running_records if record["level"] == "warning" and "problem" in record]
    # Problems with the entry alone come first, in entry order, then those
    # that depend on the host CPUs.
    assert [record["msg"] for record in warnings] == [
        "impossible to pin negative number",
        "impossible to pin 9 on VM where we have only 4",
        "impossible to pin 7 on host where we have only 4",
    ] * 3
    for record in warnings:
        assert record["namespace"] == "default"
        assert record["name"] == "fedora-pinned"
        assert record["component"] == "pinning-hook"
        assert record["hookPoint"] == "OnDefineDomain"


def test_every_call_logs_outcome(tmp_path: pathlib.Path, launcher_domain: bytes) -> None:
    with Sidecar(tmp_path, "--host-cpus", "0-3") as running:
        running.client().on_define_domain(launcher_domain, vmi_bytes(["0-2"], cores=4))
    records = [record for record in running.log_records() if record["msg"] == "OnDefineDomain completed"]

    assert len(records) == 1
    assert records[0]["outcome"] == "pinned"
    assert records[0]["pins"] == "0:2"
    assert records[0]["uid"] == "3b0e9ae2-55a5-4a7c-9d62-0c1f6a1c4e21"
    assert isinstance(records[0]["durationMs"], float)


@pytest.mark.parametrize(
    ("domain", "vmi", "fragment"),
    [
        (b"<domain", vmi_bytes(["0-1"]), "the domain XML is not well-formed"),
        (b"", vmi_bytes(["0-1"]), "the domain XML is empty"),
        (b"<domain><name>x</name></domain>", vmi_bytes(["0-1"]), "has no <vcpu> element"),
        (b"<domain><vcpu>two</vcpu></domain>", vmi_bytes(["0-1"]), "<vcpu> is 'two'"),
        (b"<domain><vcpu>2</vcpu></domain>", b"{not json", "the VMI is not valid JSON"),
        (b"<domain><vcpu>2</vcpu></domain>", b"\xff\xfe", "the VMI is not UTF-8"),
        (b"<domain><vcpu>2</vcpu></domain>", b"[]", "the VMI must be a JSON object"),
        (
            b"<domain><vcpu>2</vcpu></domain>",
            b'{"metadata":{"annotations":{"cpu-pinning.vm.kubevirt.io/pinning":"{\\"0\\": 2}"}}}',
            "cpu-pinning.vm.kubevirt.io/pinning must be a JSON list of strings",
        ),
        (
            b'<!DOCTYPE d [<!ENTITY a "aaaa">]><domain><vcpu>2</vcpu><name>&a;</name></domain>',
            vmi_bytes(["0-1"]),
            "DOCTYPE",
        ),
    ],
    ids=[
        "broken-xml",
        "empty-xml",
        "no-vcpu",
        "vcpu-not-number",
        "broken-json",
        "not-utf8",
        "vmi-not-object",
        "annotation-not-list",
        "entity-declaration",
    ],
)
def test_invalid_input_rejected(sidecar: Sidecar, domain: bytes, vmi: bytes, fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        sidecar.client().on_define_domain(domain, vmi)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in raised.value.details()
    # The sidecar keeps serving after rejecting a request.
    assert sidecar.client().info().name == "pinning-hook"


def test_shutdown_exits_and_removes_socket(tmp_path: pathlib.Path) -> None:
    running = Sidecar(tmp_path, "--host-cpus", "0-3").start()
    running.client().shutdown()

    assert running.wait() == 0
    assert not running.socket_path.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_exits_and_removes_socket(tmp_path: pathlib.Path, signum: int) -> None:
    running = Sidecar(tmp_path, "--host-cpus", "0-3").start()

    assert running.stop(signum) == 0
    assert not running.socket_path.exists()
    assert list(tmp_path.iterdir()) == []


def test_socket_not_world_writable(sidecar: Sidecar) -> None:
    mode = sidecar.socket_path.stat().st_mode

    assert stat.S_ISSOCK(mode)
    assert not mode & stat.S_IWOTH
    assert not mode & stat.S_IROTH


def test_socket_dir_holds_only_socket(sidecar: Sidecar) -> None:
    assert list(sidecar.socket_dir.iterdir()) == [sidecar.socket_path]


def test_stale_socket_replaced(tmp_path: pathlib.Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "pinning-hook-hook-sidecar-0.sock"))
    stale.close()

    with Sidecar(tmp_path, "--host-cpus", "0-3") as running:
        assert running.client().info().name == "pinning-hook"


def test_live_socket_not_taken_over(sidecar: Sidecar) -> None:
    second = Sidecar(sidecar.socket_dir, "--host-cpus", "0-3")
    result = subprocess.run(
        second.command, cwd=sidecar.socket_dir, env=second.env, capture_output=True, text=True, timeout=20
    )

    assert result.returncode == 1
    assert "another live server listens" in result.stderr
    assert sidecar.client().info().name == "pinning-hook"


def test_missing_socket_dir_fails(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing"
    result = subprocess.run(
        [sys.executable, "-m", "pinning_hook", "serve", "--socket-dir", str(missing)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
    )

    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_host_cpus_from_environment(tmp_path: pathlib.Path, launcher_domain: bytes) -> None:
    with Sidecar(tmp_path, env={"PINNING_HOOK_HOST_CPUS": "0-1,4-5"}) as running:
        running.client().on_define_domain(launcher_domain, vmi_bytes(["0-2"], cores=4))
    messages = [
        record["msg"] for record in running.log_records() if record["level"] == "warning" and "problem" in record
    ]

    assert messages == ["impossible to pin 2 on host where we have only 4 (0-1,4-5)"]


def test_strict_policy_fails_call(tmp_path: pathlib.Path, launcher_domain: bytes) -> None:
    strict = {"cpu-pinning.vm.kubevirt.io/policy": "strict"}
    with Sidecar(tmp_path, "--host-cpus", "0-3") as running:
        with pytest.raises(grpc.RpcError) as raised:
            running.client().on_define_domain(launcher_domain, vmi_bytes(["0-7", "9-1"], cores=4, annotations=strict))
        # The same VMI without problems starts.
        output = running.client().on_define_domain(launcher_domain, vmi_bytes(["0-2"], cores=4, annotations=strict))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == (
        "pinning-hook: the strict pinning policy rejects the pin list: "
        "impossible to pin 9 on VM where we have only 4 (entry '9-1'); "
        "impossible to pin 7 on host where we have only 4 (entry '0-7')"
    )
    assert pins_in(output) == {0: "2"}
    warnings = [
        record["msg"] for record in running.log_records() if record["level"] == "warning" and "problem" in record
    ]
    assert warnings == [
        "impossible to pin 9 on VM where we have only 4",
        "impossible to pin 7 on host where we have only 4",
    ]


def test_rejection_logged_with_vmi_identity(tmp_path: pathlib.Path, launcher_domain: bytes) -> None:
    broken = {"cpu-pinning.vm.kubevirt.io/pinning": "0-2"}
    with Sidecar(tmp_path, "--host-cpus", "0-3") as running:
        with pytest.raises(grpc.RpcError):
            running.client().on_define_domain(launcher_domain, vmi_bytes(None, annotations=broken))
    records = [record for record in running.log_records() if record["msg"].startswith("OnDefineDomain")]

    assert [record["msg"].split(":")[0] for record in records] == [
        "OnDefineDomain rejected invalid input",
        "OnDefineDomain failed",
    ]
    for record in records:
        assert record["namespace"] == "default"
        assert record["name"] == "fedora-pinned"
        assert record["uid"] == "3b0e9ae2-55a5-4a7c-9d62-0c1f6a1c4e21"
