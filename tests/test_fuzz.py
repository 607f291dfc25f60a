"""Property tests: random pin lists, cpusets, VMIs, domains and raw requests.

They call only the public functions (parse_cpuset, parse_entry,
parse_pin_list, parse_vmi_json, rewrite_domain) and the gRPC handlers. The
invariants hold whatever the pin-list rules are. No exception escapes but
the package's own, every output parses and libvirt defines it, no vCPU is
pinned twice, pins use only available host CPUs, and a second rewrite
changes nothing.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import PIN_LIST_ANNOTATION, hotplug_vcpus
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from inprocess import call_raw, serve_in_process
from launcher_client import encode_bytes_fields

from pinning_hook import domainxml
from pinning_hook.cpusets import MAX_CPU_ID, CpusetSyntaxError, format_cpuset, parse_cpuset
from pinning_hook.errors import PinningHookError
from pinning_hook.hookapi import v1alpha3_pb2
from pinning_hook.host import HostCpuSource
from pinning_hook.pinlist import PinEntry, parse_entry, parse_pin_list
from pinning_hook.problems import Problem
from pinning_hook.rewrite import rewrite_domain
from pinning_hook.vmi import parse_vmi_json

# Host CPU ids that the drawn domains and pin lists mostly use.
HOST_CPU_RANGE = 128

# --- Strategies -------------------------------------------------------------

small_numbers = st.integers(0, 70)
numbers = st.one_of(
    small_numbers,
    st.integers(0, MAX_CPU_ID + 2),
    st.integers(10**6, 10**40),
)
number_texts = st.one_of(
    numbers.map(str),
    st.integers(-20, -1).map(str),
    numbers.map(lambda number: "0" * 3 + str(number)),
)
whitespace = st.sampled_from(["", " ", "  ", "\t", "\n", "\u00a0", "\u3000"])

cpuset_items = st.one_of(
    number_texts,
    st.tuples(number_texts, number_texts).map("-".join),
    number_texts.map(lambda number: "^" + number),
    st.sampled_from(["", "^", "-", "1-", "-1", "^1-2", "٣", "1 - 2", "0x3"]),
)
cpuset_texts = st.lists(cpuset_items, min_size=1, max_size=5).map(",".join)

garbage = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "-", ":", "1:", "1-2-3", "0x1-2", "١-٢", "1:^", "1:0-", "1::2", "+1-2", "1-+2", "1,2"]),
)

vcpu_to_cpu = st.builds(lambda a, v, p, b: f"{a}{v}-{p}{b}", whitespace, number_texts, number_texts, whitespace)
vcpu_to_cpuset = st.builds(lambda a, v, c, b: f"{a}{v}:{c}{b}", whitespace, number_texts, cpuset_texts, whitespace)
in_range_entries = st.builds(lambda v, p: f"{v}-{p}", small_numbers, st.integers(0, HOST_CPU_RANGE - 1))
pin_entries = st.one_of(in_range_entries, vcpu_to_cpu, vcpu_to_cpuset, garbage)
pin_lists = st.lists(pin_entries, max_size=40)

host_cpu_sets = st.one_of(
    st.frozensets(st.integers(0, HOST_CPU_RANGE - 1), min_size=1, max_size=HOST_CPU_RANGE),
    st.integers(1, HOST_CPU_RANGE).map(lambda count: frozenset(range(count))),
)
cpu_sets = st.frozensets(st.integers(0, HOST_CPU_RANGE - 1), min_size=1, max_size=8)


@st.composite
def domains(draw: st.DrawFn, *, dedicated: bool = False) -> bytes:
    """Draw a domain that libvirt's QEMU driver can define, shaped as virt-launcher writes them."""
    vcpus = draw(st.integers(1, 64))
    hotplug = draw(st.booleans())
    current = draw(st.integers(1, vcpus)) if hotplug else vcpus

    lines = ['<domain type="qemu" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">', "<name>fuzz</name>"]
    lines.append('<memory unit="MiB">64</memory>')
    current_attribute = f' current="{current}"' if hotplug else ""
    lines.append(f'<vcpu placement="static"{current_attribute}>{vcpus}</vcpu>')
    if hotplug:
        lines += hotplug_vcpus(vcpus, current)

    # With dedicatedCpuPlacement, KubeVirt pins every vCPU to one exclusive CPU.
    if dedicated:
        cpus = draw(st.lists(st.integers(0, HOST_CPU_RANGE - 1), min_size=vcpus, max_size=vcpus, unique=True))
        pins = {vcpu: frozenset({cpu}) for vcpu, cpu in enumerate(cpus)}
    else:
        pinned = draw(st.lists(st.integers(0, vcpus + 2), unique=True, max_size=8))
        pins = {vcpu: draw(cpu_sets) for vcpu in pinned}
    emulator = draw(st.one_of(st.none(), cpu_sets))
    if pins or emulator is not None:
        lines.append("<cputune>")
        lines += [f'<vcpupin vcpu="{vcpu}" cpuset="{format_cpuset(cpus)}"></vcpupin>' for vcpu, cpus in pins.items()]
        if emulator is not None:
            lines.append(f'<emulatorpin cpuset="{format_cpuset(emulator)}"></emulatorpin>')
        lines.append("</cputune>")

    lines.append('<os><type arch="x86_64" machine="pc">hvm</type></os>')
    if draw(st.booleans()):
        lines.append(f'<cpu><topology sockets="{vcpus}" cores="1" threads="1"></topology></cpu>')
    lines.append(
        "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
        '<controller type="usb" model="none"></controller><memballoon model="none"></memballoon></devices>'
    )
    if draw(st.booleans()):
        lines.append(
            '<metadata><kubevirt xmlns="http://kubevirt.io"><uid>fuzz</uid></kubevirt>'
            '<f:note xmlns:f="urn:example:fuzz" f:kind="x">kept</f:note></metadata>'
        )
    if draw(st.booleans()):
        lines.append('<qemu:commandline><qemu:arg value="-overcommit"></qemu:arg></qemu:commandline>')
    lines.append("</domain>")

    # virt-launcher indents with tabs; some tools write one line.
    if draw(st.booleans()):
        return "".join(lines).encode()
    return ("\n\t".join(lines[:-1]) + "\n" + lines[-1]).encode()


@st.composite
def vmis(draw: st.DrawFn, *, dedicated: bool = False, pins: st.SearchStrategy[list[str]] = pin_lists) -> bytes:
    """Draw a VMI as virt-launcher sends it, with the pin list in the annotation or the spec field."""
    cpu: dict[str, Any] = {"cores": draw(st.integers(1, 64))}
    if dedicated:
        cpu["dedicatedCpuPlacement"] = True
    annotations: dict[str, str] = {}
    where = draw(st.sampled_from(["annotation", "annotation", "annotation", "field", "both", "none"]))
    if where in ("annotation", "both"):
        annotations[PIN_LIST_ANNOTATION] = json.dumps(draw(pins))
    if where in ("field", "both"):
        cpu["pinning"] = draw(pins)
    document = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "fuzz", "namespace": "default", "uid": "fuzz-uid", "annotations": annotations},
        "spec": {"domain": {"cpu": cpu}},
    }
    return json.dumps(document).encode()


@st.composite
def rewrite_cases(draw: st.DrawFn) -> tuple[bytes, bytes, frozenset[int]]:
    """Draw a domain, a VMI and the host CPUs, with pin lists that name the domain's vCPUs and CPUs often."""
    dedicated = draw(st.booleans())
    domain = draw(domains(dedicated=dedicated))
    host = draw(host_cpu_sets)

    tree = domainxml.parse_domain(domain)
    existing = domainxml.read_cputune(tree).vcpu_pins
    available = frozenset().union(*existing.values()) if dedicated and existing else host
    fitting = st.builds(
        lambda vcpu, cpu: f"{vcpu}-{cpu}",
        st.integers(0, domainxml.read_vcpu_count(tree) - 1),
        st.sampled_from(sorted(available)),
    )
    pins = st.lists(st.one_of(fitting, fitting, pin_entries), min_size=1, max_size=40)
    return domain, draw(vmis(dedicated=dedicated, pins=pins)), host


# --- Pin lists and cpusets --------------------------------------------------


@given(st.one_of(cpuset_texts, st.text(max_size=40)))
def test_cpuset_parse_total(text: str) -> None:
    try:
        cpus = parse_cpuset(text)
    except CpusetSyntaxError:
        return

    assert all(0 <= cpu <= MAX_CPU_ID for cpu in cpus)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, MAX_CPU_ID), st.integers(0, 40)), min_size=1, max_size=6))
def test_cpuset_matches_model(items: list[tuple[bool, int, int]]) -> None:
    """Items apply left to right: a range adds its CPUs, an exclusion removes one."""
    texts = []
    expected: set[int] = set()
    for exclude, start, length in items:
        end = min(start + length, MAX_CPU_ID)
        if exclude:
            texts.append(f"^{start}")
            expected.discard(start)
        else:
            texts.append(f"{start}-{end}")
            expected.update(range(start, end + 1))

    assert parse_cpuset(",".join(texts)) == expected


@given(st.frozensets(st.integers(0, MAX_CPU_ID), min_size=1, max_size=50))
def test_cpuset_format_round_trip(cpus: frozenset[int]) -> None:
    assert parse_cpuset(format_cpuset(cpus)) == cpus


@given(pin_entries)
def test_entry_parse_total(text: str) -> None:
    result = parse_entry(text)

    assert isinstance(result, PinEntry | Problem)
    if isinstance(result, PinEntry):
        assert result.vcpu >= 0
        assert result.cpus
        assert all(cpu >= 0 for cpu in result.cpus)


@given(whitespace, st.integers(0, 10**6), st.integers(0, MAX_CPU_ID), whitespace)
def test_entry_vcpu_to_cpu_parsed(before: str, vcpu: int, cpu: int, after: str) -> None:
    result = parse_entry(f"{before}{vcpu}-{cpu}{after}")

    assert isinstance(result, PinEntry)
    assert result.vcpu == vcpu
    assert result.cpus == {cpu}


@given(st.integers(0, 10**6), st.frozensets(st.integers(0, MAX_CPU_ID), min_size=1, max_size=20))
def test_entry_vcpu_to_cpuset_parsed(vcpu: int, cpus: frozenset[int]) -> None:
    result = parse_entry(f"{vcpu}:{format_cpuset(cpus)}")

    assert isinstance(result, PinEntry)
    assert result.vcpu == vcpu
    assert result.cpus == cpus


@given(pin_lists)
def test_pin_list_one_entry_per_vcpu(entries: list[str]) -> None:
    parsed, problems = parse_pin_list(entries)
    vcpus = [entry.vcpu for entry in parsed]

    assert vcpus == sorted(set(vcpus))
    # Each input entry ends up applied, reported or replaced.
    assert len(parsed) + len(problems) >= len(entries)


# --- VMI JSON with wrong types and extreme values ---------------------------

# Where read_vmi looks, and which of those places must hold a JSON object.
VMI_PATHS = [
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "uid"),
    ("metadata", "annotations"),
    ("metadata", "annotations", PIN_LIST_ANNOTATION),
    ("spec",),
    ("spec", "domain"),
    ("spec", "domain", "cpu"),
    ("spec", "domain", "cpu", "cores"),
    ("spec", "domain", "cpu", "sockets"),
    ("spec", "domain", "cpu", "maxSockets"),
    ("spec", "domain", "cpu", "pinning"),
    ("spec", "domain", "cpu", "dedicatedCpuPlacement"),
    ("spec", "domain", "resources"),
    ("spec", "domain", "resources", "requests"),
    ("spec", "domain", "resources", "requests", "cpu"),
]
OBJECT_PATHS = {
    ("metadata", "annotations"),
    ("spec", "domain", "cpu"),
    ("spec", "domain", "resources"),
    ("spec", "domain", "resources", "requests"),
}
PLACEHOLDER = "pinning-hook-fuzz-placeholder"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
# JSON text that json.dumps would not write: deep nesting, numbers that
# overflow int() or float(), non-finite numbers, lone surrogates.
extreme_json_texts = st.sampled_from(
    [
        "[" * 3000 + "]" * 3000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        "1" * 5000,
        '"' + "9" * 400 + '"',
        "1" * 400,
        "1e999",
        "-0",
        "NaN",
        "Infinity",
        '"\\ud800"',
        '"' + "x" * 100_000 + '"',
    ]
)
value_texts = st.one_of(json_values.map(json.dumps), extreme_json_texts)


def vmi_text_with(path: tuple[str, ...], value_text: str) -> tuple[bytes, object]:
    """Build a pinned VMI as JSON text with `value_text` spliced in at `path`; also return the value."""
    document: dict[str, Any] = {
        "metadata": {"name": "fuzz", "annotations": {PIN_LIST_ANNOTATION: '["0-1"]'}},
        "spec": {"domain": {"cpu": {}}},
    }
    node = document
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = PLACEHOLDER
    text = json.dumps(document).replace(json.dumps(PLACEHOLDER), value_text)
    try:
        value = json.loads(value_text)
    except (ValueError, RecursionError):
        value = None
    return text.encode(), value


@settings(max_examples=500)
@given(st.sampled_from(VMI_PATHS), value_texts)
def test_vmi_parse_total(path: tuple[str, ...], value_text: str) -> None:
    vmi_json, value = vmi_text_with(path, value_text)

    try:
        parse_vmi_json(vmi_json)
    except PinningHookError:
        return
    # Anything but an object or null where an object belongs is an error.
    assert path not in OBJECT_PATHS or value is None or isinstance(value, dict), f"{value_text[:40]} accepted"


nasty_numbers = st.sampled_from(["", " ", "-1", "0", "٣", "1e3", "0x10", "4294967296", "9" * 5000, "1 2", "+1"])


@st.composite
def nasty_domains(draw: st.DrawFn) -> bytes:
    """Draw a domain with one number replaced: the vCPU count, a vcpupin's vCPU or cpuset."""
    domain = draw(domains()).decode()
    nasty = draw(nasty_numbers)
    target = draw(st.sampled_from(["vcpu", "vcpupin-vcpu", "vcpupin-cpuset"]))
    if target == "vcpu":
        start = domain.index(">", domain.index("<vcpu ")) + 1
        end = domain.index("</vcpu>", start)
        return (domain[:start] + nasty + domain[end:]).encode()
    pin = '<cputune><vcpupin vcpu="0" cpuset="0"></vcpupin></cputune>'
    if target == "vcpupin-vcpu":
        pin = pin.replace('vcpu="0"', f'vcpu="{nasty}"')
    else:
        pin = pin.replace('cpuset="0"', f'cpuset="{nasty}"')
    return (
        domain.replace("<cputune>", "<cputune-old>")
        .replace("</cputune>", "</cputune-old>")
        .replace("<os>", pin + "<os>")
        .encode()
    )


@given(nasty_domains(), host_cpu_sets)
def test_rewrite_nasty_numbers_rejected_cleanly(domain: bytes, host: frozenset[int]) -> None:
    vmi_json = json.dumps({"metadata": {"annotations": {PIN_LIST_ANNOTATION: '["0-0"]'}}}).encode()

    output = rewrite_or_reject(domain, vmi_json, host)

    assert output is None or domainxml.parse_domain(output) is not None


# --- The whole rewrite ------------------------------------------------------


def fixed_host(cpus: frozenset[int]) -> HostCpuSource:
    """A host with exactly these CPUs available and no topology, whatever machine runs the test."""
    return HostCpuSource(override=cpus, sysfs_cpu_root=pathlib.Path("/nonexistent"))


def rewrite_or_reject(domain: bytes, vmi_json: bytes, host: frozenset[int]) -> bytes | None:
    """Run the rewrite; return None when it rejects the input with the package's own error."""
    try:
        return rewrite_domain(domain, parse_vmi_json(vmi_json), fixed_host(host)).domain_xml
    except PinningHookError:
        return None


def check_rewrite(domain: bytes, vmi_json: bytes, host: frozenset[int]) -> bytes | None:
    """Check every invariant of one rewrite and return its output, or None if rejected."""
    output = rewrite_or_reject(domain, vmi_json, host)
    if output is None:
        event("rejected")
        return None
    event("unchanged" if output == domain else "rewritten")

    parsed = domainxml.parse_domain(output)
    vcpupins = [element.get("vcpu") for element in parsed.getroot().iterfind("cputune/vcpupin")]
    assert len(vcpupins) == len(set(vcpupins)), "a vCPU is pinned twice"

    existing = domainxml.read_cputune(domainxml.parse_domain(domain)).vcpu_pins
    vmi = json.loads(vmi_json)
    dedicated = vmi["spec"]["domain"]["cpu"].get("dedicatedCpuPlacement") is True
    available = frozenset().union(*existing.values()) if dedicated and existing else host
    for vcpu, cpus in domainxml.read_cputune(parsed).vcpu_pins.items():
        assert cpus <= available or cpus == existing.get(vcpu), f"vCPU {vcpu} pinned to {format_cpuset(cpus)}"

    assert rewrite_or_reject(output, vmi_json, host) == output, "a second rewrite changed the output"
    return output


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(rewrite_cases())
def test_rewrite_invariants(case: tuple[bytes, bytes, frozenset[int]]) -> None:
    check_rewrite(*case)


@given(domains(), st.data())
def test_rewrite_without_pin_list_returns_input(domain: bytes, data: st.DataObject) -> None:
    vmi_json = json.dumps({"metadata": {"name": "fuzz"}, "spec": {"domain": {"cpu": {"cores": 2}}}}).encode()
    host = data.draw(host_cpu_sets)

    assert rewrite_domain(domain, parse_vmi_json(vmi_json), fixed_host(host)).domain_xml is domain


@pytest.mark.libvirt
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(rewrite_cases())
def test_rewrite_output_defined_by_libvirt(virt: Any, case: tuple[bytes, bytes, frozenset[int]]) -> None:
    import libvirt

    domain, vmi_json, host = case
    output = check_rewrite(domain, vmi_json, host)
    assume(output is not None)

    try:
        defined = virt.connection.defineXML(output.decode())
    except libvirt.libvirtError as error:
        pytest.fail(f"libvirt rejected the rewritten domain: {error}\n{output.decode()}")
    defined.undefine()


# --- Raw bytes into the gRPC handlers ---------------------------------------


@pytest.fixture(scope="module")
def hook_socket() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="pinning-hook-") as directory:
        with serve_in_process(pathlib.Path(directory)) as socket_path:
            yield socket_path


def mutated(data: bytes, draw: st.DrawFn) -> bytes:
    """Cut, flip or splice bytes of `data`."""
    operation = draw(st.sampled_from(["keep", "cut", "flip", "insert"]))
    if operation == "keep" or not data:
        return data
    position = draw(st.integers(0, len(data) - 1))
    if operation == "cut":
        return data[:position]
    if operation == "flip":
        return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1 :]
    return data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]


@st.composite
def raw_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    method = draw(
        st.sampled_from(
            [
                "/kubevirt.hooks.v1alpha1.Callbacks/OnDefineDomain",
                "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain",
                "/kubevirt.hooks.v1alpha2.Callbacks/PreCloudInitIso",
                "/kubevirt.hooks.info.Info/Info",
            ]
        )
    )
    if draw(st.booleans()):
        return method, draw(st.binary(max_size=300))
    domain = mutated(draw(domains()), draw)
    vmi_json = mutated(draw(vmis()), draw)
    return method, mutated(encode_bytes_fields({1: domain, 2: vmi_json}), draw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(raw_requests())
def test_raw_request_never_internal(hook_socket: pathlib.Path, request: tuple[str, bytes]) -> None:
    method, request_bytes = request

    code, details, response = call_raw(hook_socket, method, request_bytes)

    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (code, details)
    event(f"status {code.name}")
    if code == grpc.StatusCode.OK and method.endswith("/OnDefineDomain"):
        sent = v1alpha3_pb2.OnDefineDomainParams.FromString(request_bytes).domainXML
        returned = v1alpha3_pb2.OnDefineDomainResult.FromString(response).domainXML
        # Either the domain passed through, or the rewrite's output parses.
        assert returned == sent or domainxml.parse_domain(returned) is not None
