"""A stand-in for virt-launcher's side of the hook protocol.

It does what virt-launcher does with a hook sidecar: find the socket in the
hooks directory, call Info with a 1 s deadline, pick the first of v1alpha3,
v1alpha2 and v1alpha1 that the sidecar offers, and call OnDefineDomain.

The protobuf messages are encoded and decoded by hand from the wire format
(field numbers and types only), deliberately without the package's
generated stubs, so that a mistake in proto/ cannot hide itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import grpc

VERSION_PREFERENCE = ("v1alpha3", "v1alpha2", "v1alpha1")
INFO_DEADLINE_SECONDS = 1.0
CALL_DEADLINE_SECONDS = 60.0


# Protobuf wire format: a key is (field_number << 3) | wire_type; wire type 0
# is a varint and 2 is a length-delimited byte string.
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position


def encode_bytes_fields(fields: dict[int, bytes]) -> bytes:
    """Encode a message whose fields are all `bytes`, skipping empty ones as proto3 does."""
    out = bytearray()
    for number, value in sorted(fields.items()):
        if value:
            out += _varint(number << 3 | 2) + _varint(len(value)) + value
    return bytes(out)


def decode_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Decode a message into (field number, value) pairs: ints for varints, bytes otherwise."""
    fields: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _read_varint(data, position)
            fields.append((number, value))
        elif wire_type == 2:
            length, position = _read_varint(data, position)
            fields.append((number, data[position : position + length]))
            position += length
        else:
            raise ValueError(f"unexpected wire type {wire_type} for field {number}")
    return fields


@dataclasses.dataclass(frozen=True)
class HookInfo:
    name: str
    versions: tuple[str, ...]
    hook_points: tuple[tuple[str, int], ...]


def decode_info(data: bytes) -> HookInfo:
    name = ""
    versions: list[str] = []
    hook_points: list[tuple[str, int]] = []
    for number, value in decode_fields(data):
        if number == 1 and isinstance(value, bytes):
            name = value.decode()
        elif number == 3 and isinstance(value, bytes):
            point = dict(decode_fields(value))
            point_name = point.get(1, b"")
            priority = point.get(2, 0)
            hook_points.append(
                (
                    point_name.decode() if isinstance(point_name, bytes) else "",
                    int(priority) if isinstance(priority, int) else 0,
                )
            )
        elif number == 4 and isinstance(value, bytes):
            versions.append(value.decode())
    return HookInfo(name=name, versions=tuple(versions), hook_points=tuple(hook_points))


def _raw(channel: grpc.Channel, method: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(method, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)


def find_socket(hooks_dir: pathlib.Path, timeout: float = 10.0) -> pathlib.Path:
    """Poll the hooks directory every 300 ms, as virt-launcher does, until one socket appears."""
    deadline = time.monotonic() + timeout
    while True:
        entries = sorted(hooks_dir.iterdir()) if hooks_dir.is_dir() else []
        if len(entries) == 1:
            return entries[0]
        if len(entries) > 1:
            raise RuntimeError(f"{hooks_dir} contains {len(entries)} entries; expected one socket: {entries}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no socket appeared in {hooks_dir} within {timeout} s")
        time.sleep(0.3)


class LauncherClient:
    """One sidecar, called the way virt-launcher calls it."""

    def __init__(self, socket_path: pathlib.Path) -> None:
        self.socket_path = socket_path

    def _channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"unix:{self.socket_path}")

    def info(self) -> HookInfo:
        with self._channel() as channel:
            raw = _raw(channel, "/kubevirt.hooks.info.Info/Info")(b"", timeout=INFO_DEADLINE_SECONDS)
        return decode_info(raw)

    def pick_version(self) -> str:
        offered = self.info().versions
        for version in VERSION_PREFERENCE:
            if version in offered:
                return version
        raise RuntimeError(f"the sidecar offers none of {VERSION_PREFERENCE}: {offered}")

    def on_define_domain(self, domain_xml: bytes, vmi_json: bytes, version: str | None = None) -> bytes:
        """Call OnDefineDomain on a fresh connection and return the domain XML it sends back."""
        version = version or self.pick_version()
        request = encode_bytes_fields({1: domain_xml, 2: vmi_json})
        with self._channel() as channel:
            method = f"/kubevirt.hooks.{version}.Callbacks/OnDefineDomain"
            raw = _raw(channel, method)(request, timeout=CALL_DEADLINE_SECONDS)
        fields = dict(decode_fields(raw))
        result = fields.get(1, b"")
        return result if isinstance(result, bytes) else b""

    def shutdown(self) -> None:
        with self._channel() as channel:
            _raw(channel, "/kubevirt.hooks.v1alpha3.Callbacks/Shutdown")(b"", timeout=INFO_DEADLINE_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Call a hook sidecar as virt-launcher does.")
    parser.add_argument("--hooks-dir", type=pathlib.Path, required=True, help="directory holding the sidecar's socket")
    parser.add_argument("--vmi", type=pathlib.Path, required=True, help="VMI as JSON, as virt-launcher sends it")
    parser.add_argument("--domain", type=pathlib.Path, required=True, help="domain XML to send")
    parser.add_argument(
        "--version", choices=VERSION_PREFERENCE, help="callback version (default: as virt-launcher picks)"
    )
    parser.add_argument("--shutdown", action="store_true", help="call Shutdown afterwards (v1alpha3)")
    arguments = parser.parse_args(argv)
    try:
        return _call(arguments)
    except grpc.RpcError as error:
        print(f"error: the sidecar returned {error.code().name}: {error.details()}", file=sys.stderr)
    except (OSError, TimeoutError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
    return 1


def _call(arguments: argparse.Namespace) -> int:

    client = LauncherClient(find_socket(arguments.hooks_dir))
    info = client.info()
    version = arguments.version or client.pick_version()
    hook_points = ",".join(name for name, _ in info.hook_points)
    print(f"# Info: name={info.name} versions={','.join(info.versions)} hook points={hook_points}", file=sys.stderr)
    print(f"# OnDefineDomain over {version}", file=sys.stderr)
    sys.stdout.write(
        client.on_define_domain(arguments.domain.read_bytes(), arguments.vmi.read_bytes(), version).decode()
    )
    if arguments.shutdown:
        client.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
