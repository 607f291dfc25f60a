"""The parts of a VirtualMachineInstance (VMI) that pinning depends on.

virt-launcher sends the whole VMI as JSON. Only its identity, the pin list
and the CPU settings matter here; everything else is ignored. Wrong types
raise InvalidInput that names the JSON path, so a typo in a manifest is
reported instead of silently leaving the VM unpinned.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pinning_hook.cpusets import MAX_VCPUS
from pinning_hook.errors import InvalidInput
from pinning_hook.problems import Problem

PIN_LIST_ANNOTATION = "cpu-pinning.vm.kubevirt.io/pinning"
POLICY_ANNOTATION = "cpu-pinning.vm.kubevirt.io/policy"
EMULATOR_PIN_ANNOTATION = "cpu-pinning.vm.kubevirt.io/emulatorpin"
IOTHREAD_PIN_ANNOTATION = "cpu-pinning.vm.kubevirt.io/iothreadpin"
ANNOTATIONS = (PIN_LIST_ANNOTATION, POLICY_ANNOTATION, EMULATOR_PIN_ANNOTATION, IOTHREAD_PIN_ANNOTATION)
# The pin-list field of KubeVirt builds that carry it. Upstream KubeVirt
# prunes unknown spec fields, hence the annotation.
PIN_LIST_FIELD = "spec.domain.cpu.pinning"

PIN_LIST_SHAPE = 'a JSON list of strings, such as ["0-2", "1-3"]'
IOTHREAD_PIN_SHAPE = 'a JSON list of "IOTHREAD:CPUSET" strings, such as ["1:0-1"]'

# The largest VMI JSON accepted. A VMI is a few KiB, and tens of KiB with
# many disks, networks and annotations.
MAX_VMI_JSON_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class CpuTopology:
    """The guest CPU topology from `spec.domain.cpu`."""

    sockets: int = 1
    cores: int = 1
    threads: int = 1
    # Set when vCPU hotplug is configured: the domain then has
    # max_sockets * cores * threads vCPUs, some of them offline.
    max_sockets: int | None = None

    @property
    def vcpu_count(self) -> int:
        return (self.max_sockets or self.sockets) * self.cores * self.threads


@dataclasses.dataclass(frozen=True)
class Vmi:
    """The fields of one VMI that pinning depends on."""

    namespace: str
    name: str
    uid: str
    # The pin-list entries as written, or None when the VMI has no pin list.
    pin_list: tuple[str, ...] | None
    # Source of pin_list: PIN_LIST_ANNOTATION or PIN_LIST_FIELD.
    pin_list_source: str | None
    dedicated_cpu_placement: bool
    topology: CpuTopology
    problems: tuple[Problem, ...] = ()
    # Raw value of POLICY_ANNOTATION; policies.parse_policy interprets it.
    policy: str | None = None
    # cpuset for <emulatorpin>, from EMULATOR_PIN_ANNOTATION.
    emulator_pin: str | None = None
    # "IOTHREAD:CPUSET" entries for <iothreadpin>, from IOTHREAD_PIN_ANNOTATION.
    iothread_pins: tuple[str, ...] | None = None
    # True when this VMI is the target of a live migration in progress, in
    # which case KubeVirt discards the hook's output.
    migration_target: bool = False

    @property
    def requests_pinning(self) -> bool:
        """Whether the VMI requests any pin; without one the domain is passed through."""
        return self.pin_list is not None or self.emulator_pin is not None or self.iothread_pins is not None

    @property
    def reference(self) -> str:
        """The VMI as `namespace/name`, the way kubectl and KubeVirt name it."""
        return f"{self.namespace}/{self.name}"


def parse_vmi_json(data: bytes) -> Vmi:
    """Decode the VMI JSON that virt-launcher sends and read it."""
    if len(data) > MAX_VMI_JSON_BYTES:
        raise InvalidInput(f"the VMI is {len(data)} bytes, above the limit of {MAX_VMI_JSON_BYTES} bytes")
    if not data.strip():
        raise InvalidInput("the VMI is empty; virt-launcher sends the VirtualMachineInstance as JSON")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the VMI is not UTF-8: invalid byte at offset {error.start}") from error
    return read_vmi(_load_json(text, "the VMI"))


def read_vmi(document: object) -> Vmi:
    """Read a VMI, or a VirtualMachine's template, already decoded from JSON or YAML.

    An InvalidInput raised here carries the VMI's namespace, name and uid in
    `fields` when they could be read, so that the rejection is logged with them.
    """
    vmi = _mapping(document, "the VMI")
    try:
        return _read_vmi(vmi)
    except InvalidInput as error:
        error.fields.update(_identity(vmi))
        raise


def _identity(vmi: Mapping[str, Any]) -> dict[str, str]:
    """Return whichever of namespace, name and uid the VMI's metadata has as strings."""
    metadata = vmi.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    return {key: value for key in ("namespace", "name", "uid") if isinstance(value := metadata.get(key), str)}


def _read_vmi(vmi: Mapping[str, Any]) -> Vmi:
    kind = vmi.get("kind")
    if kind is not None and kind not in ("VirtualMachineInstance", "VirtualMachine"):
        raise InvalidInput(
            f"the manifest is a {str(kind)[:40]!r}, not a VirtualMachineInstance or VirtualMachine; "
            "give the VMI or VirtualMachine that carries the pin list"
        )
    problems: list[Problem] = []
    if kind == "VirtualMachine":
        problems += _misplaced_annotations(vmi)
        vmi = _vmi_from_virtual_machine(vmi)

    metadata = _mapping(vmi.get("metadata", {}), "metadata")
    annotations = _optional_mapping(metadata.get("annotations"), "metadata.annotations")
    spec = _mapping(vmi.get("spec", {}), "spec")
    domain = _mapping(spec.get("domain", {}), "spec.domain")
    cpu = _optional_mapping(domain.get("cpu"), "spec.domain.cpu")

    from_annotation = _pin_list_from_annotation(annotations)
    from_field = _pin_list_from_field(cpu)
    if from_annotation is not None and from_field is not None:
        problems.append(
            Problem(
                code="two-pin-lists",
                message=f"both the annotation {PIN_LIST_ANNOTATION} and {PIN_LIST_FIELD} set a pin list; "
                "the annotation wins",
                hint=f"remove one of them; {PIN_LIST_FIELD} is ignored",
            )
        )

    if from_annotation is not None:
        pin_list, source = from_annotation, PIN_LIST_ANNOTATION
    elif from_field is not None:
        pin_list, source = from_field, PIN_LIST_FIELD
    else:
        pin_list, source = None, None

    return Vmi(
        policy=_optional_string(annotations, POLICY_ANNOTATION),
        emulator_pin=_optional_string(annotations, EMULATOR_PIN_ANNOTATION),
        iothread_pins=_iothread_pins_from_annotation(annotations),
        migration_target=_is_migration_target(vmi),
        namespace=_string(metadata.get("namespace", ""), "metadata.namespace"),
        name=_string(metadata.get("name", ""), "metadata.name"),
        uid=_string(metadata.get("uid", ""), "metadata.uid"),
        pin_list=pin_list,
        pin_list_source=source,
        dedicated_cpu_placement=cpu.get("dedicatedCpuPlacement") is True,
        topology=_topology(cpu, domain),
        problems=tuple(problems),
    )


def _misplaced_annotations(vm: Mapping[str, Any]) -> list[Problem]:
    """Warn about pinning annotations on a VirtualMachine's own metadata.

    KubeVirt copies only spec.template.metadata.annotations to the VMI, so
    annotations on the VirtualMachine itself never reach the sidecar.
    """
    metadata = vm.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict):
        return []
    keys = [key for key in ANNOTATIONS if key in annotations]
    return [
        Problem(
            code="misplaced-annotation",
            message=f"the annotation {key} is on the VirtualMachine's metadata, which KubeVirt does not copy "
            "to the VMI",
            hint="move it to spec.template.metadata.annotations",
        )
        for key in keys
    ]


def _vmi_from_virtual_machine(vm: Mapping[str, Any]) -> Mapping[str, Any]:
    """Build the VMI that a VirtualMachine's template describes.

    The template carries the annotations and the spec; the VirtualMachine's
    own metadata gives the namespace and name, as KubeVirt does.
    """
    spec = _mapping(vm.get("spec", {}), "spec")
    template = _mapping(spec.get("template", {}), "spec.template")
    outer = _mapping(vm.get("metadata", {}), "metadata")
    inner = _optional_mapping(template.get("metadata"), "spec.template.metadata")
    identity = {key: outer[key] for key in ("namespace", "name", "uid") if key in outer}
    return {"metadata": {**inner, **identity}, "spec": template.get("spec", {})}


def _pin_list_from_annotation(annotations: Mapping[str, Any]) -> tuple[str, ...] | None:
    return _json_list_annotation(annotations, PIN_LIST_ANNOTATION, PIN_LIST_SHAPE)


def _iothread_pins_from_annotation(annotations: Mapping[str, Any]) -> tuple[str, ...] | None:
    return _json_list_annotation(annotations, IOTHREAD_PIN_ANNOTATION, IOTHREAD_PIN_SHAPE)


def _json_list_annotation(annotations: Mapping[str, Any], key: str, shape: str) -> tuple[str, ...] | None:
    """Decode an annotation whose value is a JSON list of strings."""
    if key not in annotations:
        return None
    value = annotations[key]
    where = f"the annotation {key}"
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string holding {shape}, not a JSON {_json_type(value)}")
    return _string_list(_load_json(value, where, expected=shape), where, shape)


def _optional_string(annotations: Mapping[str, Any], key: str) -> str | None:
    if key not in annotations:
        return None
    return _string(annotations[key], f"the annotation {key}")


def _is_migration_target(vmi: Mapping[str, Any]) -> bool:
    """Return whether the VMI is the target of a live migration that is still running.

    virt-launcher defines the domain on the target while status.migrationState
    describes a migration that has neither completed nor failed. The source
    never calls the hook during a migration, because its domain exists already.
    """
    status = vmi.get("status")
    if not isinstance(status, dict):
        return False
    state = status.get("migrationState")
    if not isinstance(state, dict) or not state:
        return False
    return state.get("completed") is not True and state.get("failed") is not True


def _pin_list_from_field(cpu: Mapping[str, Any]) -> tuple[str, ...] | None:
    if "pinning" not in cpu:
        return None
    return _string_list(cpu["pinning"], PIN_LIST_FIELD, PIN_LIST_SHAPE)


def _string_list(value: object, where: str, shape: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidInput(f"{where} must be {shape}, not a JSON {_json_type(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidInput(f"{where} must be {shape}, but item {index} is a JSON {_json_type(item)}: {item!r:.40}")
    return tuple(value)


def _topology(cpu: Mapping[str, Any], domain: Mapping[str, Any]) -> CpuTopology:
    counts = {}
    for key in ("sockets", "cores", "threads", "maxSockets"):
        if key in cpu and cpu[key] is not None:
            counts[key] = _positive_int(cpu[key], f"spec.domain.cpu.{key}")

    if not counts.keys() & {"sockets", "cores", "threads"}:
        # Without a topology, KubeVirt gives the VM one core per requested CPU.
        cores = _cores_from_resources(domain)
        if cores is not None:
            counts["cores"] = cores

    topology = CpuTopology(
        sockets=counts.get("sockets", 1),
        cores=counts.get("cores", 1),
        threads=counts.get("threads", 1),
        max_sockets=counts.get("maxSockets"),
    )
    if topology.vcpu_count > MAX_VCPUS:
        raise InvalidInput(
            f"spec.domain.cpu gives {topology.vcpu_count} vCPUs (sockets or maxSockets × cores × threads), "
            f"above the limit of {MAX_VCPUS}"
        )
    return topology


_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m?)")


def _cores_from_resources(domain: Mapping[str, Any]) -> int | None:
    resources = _optional_mapping(domain.get("resources"), "spec.domain.resources")
    for kind in ("limits", "requests"):
        values = _optional_mapping(resources.get(kind), f"spec.domain.resources.{kind}")
        quantity = values.get("cpu")
        if quantity is None:
            continue
        match = _QUANTITY.fullmatch(str(quantity))
        if match is None:
            raise InvalidInput(
                f"spec.domain.resources.{kind}.cpu {quantity!r:.40} is not a CPU quantity such as '2' or '500m'"
            )
        number = float(match.group(1)) / (1000 if match.group(2) else 1)
        # float() turns a number of more than about 308 digits into infinity.
        if not math.isfinite(number):
            raise InvalidInput(f"spec.domain.resources.{kind}.cpu {quantity!r:.40} is too large for a CPU count")
        return max(1, math.ceil(number))
    return None


def _load_json(text: str, where: str, *, expected: str = "") -> object:
    """Decode JSON text, raising InvalidInput that names `where` for anything json.loads rejects."""
    advice = f"; expected {expected}" if expected else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        # An annotation is short and written by hand, so show it; a whole VMI is not.
        excerpt = f" in {text[:60]!r}" if expected else ""
        raise InvalidInput(
            f"{where} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}{excerpt}{advice}"
        ) from error
    except RecursionError as error:
        # The decoder recurses once per nested array or object.
        raise InvalidInput(f"{where} nests JSON arrays or objects too deeply to decode{advice}") from error
    except ValueError as error:
        # Not a JSONDecodeError: int() rejects integers of more than 4300
        # digits (sys.get_int_max_str_digits()).
        raise InvalidInput(f"{where} contains a JSON number with too many digits to decode{advice}") from error


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object, not a JSON {_json_type(value)}")
    return value


def _optional_mapping(value: object, where: str) -> Mapping[str, Any]:
    """Read an object that may be absent: JSON null reads as empty, as Go's encoding/json reads it."""
    return {} if value is None else _mapping(value, where)


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{where} must be a string, not a JSON {_json_type(value)}")
    return value


def _positive_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{where} must be a positive integer, not {value!r:.40}")
    return value


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
