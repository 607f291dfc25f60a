"""Reading and rewriting the libvirt domain XML.

The parser is locked down: no DTD, no entity expansion, no network access,
no huge trees. KubeVirt never sends a DOCTYPE, so one is rejected outright.
The rewrite touches only `<cputune>`: its `<vcpupin>` children are replaced,
its other children kept, and the rest of the document is serialised as it
was parsed. Indentation inside `<cputune>` follows the document's own, tabs
for virt-launcher, so a second rewrite of the output yields the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from lxml import etree

from pinning_hook.cpusets import MAX_VCPUS, CpusetSyntaxError, format_cpuset, parse_cpuset
from pinning_hook.errors import InvalidInput
from pinning_hook.vmi import CpuTopology, Vmi

# The largest domainXML accepted. A KubeVirt domain is a few tens of KiB,
# and even one with hundreds of disks and vCPU pins stays below 1 MiB.
MAX_DOMAIN_XML_BYTES = 8 * 1024 * 1024


# libvirt reads the <vcpu> count and the vcpu attribute of <vcpupin> as
# unsigned int: libvirt 9.0.0 rejects 4294967296 in both.
MAX_VCPU_NUMBER = 2**32 - 1

# Elements after which a new <cputune> goes, nearest last. Position has no
# meaning to libvirt, but next to <vcpu> is where people look for it.
_CPUTUNE_ANCHORS = ("vcpu", "vcpus", "iothreads", "iothreadids")

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=False,
    remove_comments=False,
)


def parse_domain(data: bytes) -> etree._ElementTree:
    """Parse domain XML bytes, raising InvalidInput for anything unsafe or malformed."""
    if len(data) > MAX_DOMAIN_XML_BYTES:
        raise InvalidInput(f"the domain XML is {len(data)} bytes, above the limit of {MAX_DOMAIN_XML_BYTES} bytes")
    if not data.strip():
        raise InvalidInput("the domain XML is empty")

    try:
        tree = etree.ElementTree(etree.fromstring(data, _PARSER))
    except etree.XMLSyntaxError as error:
        raise InvalidInput(f"the domain XML is not well-formed: {error}") from error

    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:  # type: ignore[attr-defined]
        raise InvalidInput("the domain XML has a DOCTYPE, which libvirt domains never need; remove it")
    root = tree.getroot()
    if root.tag != "domain":
        raise InvalidInput(f"the domain XML's root element is <{root.tag}>, expected <domain>")
    return tree


def read_vcpu_count(tree: etree._ElementTree) -> int:
    """Read the domain's vCPU count from `<vcpu>`: the maximum when hotplug is configured."""
    vcpu = tree.getroot().find("vcpu")
    if vcpu is None:
        raise InvalidInput("the domain XML has no <vcpu> element, so the vCPUs to pin are unknown")
    text = (vcpu.text or "").strip()
    count = _parse_vcpu_number(text)
    if count is None or count < 1:
        raise InvalidInput(f"the domain XML's <vcpu> is {text[:40]!r}, expected a positive number of vCPUs")
    if count > MAX_VCPUS:
        raise InvalidInput(f"the domain XML's <vcpu> is {text}, above the limit of {MAX_VCPUS} vCPUs")
    return count


def _parse_vcpu_number(text: str) -> int | None:
    """Parse ASCII decimal digits up to MAX_VCPU_NUMBER, or return None."""
    # Checked before int(), which rejects more than 4300 digits with a ValueError.
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_VCPU_NUMBER)):
        return None
    number = int(text)
    return number if number <= MAX_VCPU_NUMBER else None


@dataclasses.dataclass(frozen=True)
class CpuTune:
    """The pins in a domain's `<cputune>`: vCPUs, emulator threads and IO threads."""

    # vCPU -> host CPUs, from <vcpupin vcpu cpuset>.
    vcpu_pins: Mapping[int, frozenset[int]] = dataclasses.field(default_factory=dict)
    # Host CPUs of <emulatorpin cpuset>, or None without one.
    emulator_pin: frozenset[int] | None = None
    # IO thread id -> host CPUs, from <iothreadpin iothread cpuset>.
    iothread_pins: Mapping[int, frozenset[int]] = dataclasses.field(default_factory=dict)


# Pin elements in the order libvirt writes them. A missing kind is inserted
# after the kinds before it.
_PIN_TAGS = ("vcpupin", "emulatorpin", "iothreadpin")


def read_cputune(tree: etree._ElementTree) -> CpuTune:
    """Read the domain's existing pins, raising InvalidInput for pins libvirt would reject."""
    root = tree.getroot()
    vcpu_pins = _read_numbered_pins(root, "vcpupin", "vcpu", "a vCPU number")
    iothread_pins = _read_numbered_pins(root, "iothreadpin", "iothread", "an IO thread number")

    emulator_pin = None
    emulator = root.find("cputune/emulatorpin")
    if emulator is not None:
        emulator_pin = _element_cpuset(emulator, "<emulatorpin>")
    return CpuTune(vcpu_pins=vcpu_pins, emulator_pin=emulator_pin, iothread_pins=iothread_pins)


def _read_numbered_pins(root: etree._Element, tag: str, attribute: str, expected: str) -> dict[int, frozenset[int]]:
    pins: dict[int, frozenset[int]] = {}
    for element in root.iterfind(f"cputune/{tag}"):
        number_text = element.get(attribute, "")
        number = _parse_vcpu_number(number_text)
        if number is None:
            raise InvalidInput(f"the domain XML has <{tag} {attribute}={number_text[:40]!r}>, expected {expected}")
        if number in pins:
            raise InvalidInput(f'the domain XML has two <{tag} {attribute}="{number}">, which libvirt rejects')
        pins[number] = _element_cpuset(element, f'<{tag} {attribute}="{number}">')
    return pins


def _element_cpuset(element: etree._Element, where: str) -> frozenset[int]:
    text = element.get("cpuset", "")
    try:
        return parse_cpuset(text)
    except CpusetSyntaxError as error:
        raise InvalidInput(f"the domain XML's {where} has an invalid cpuset: {error}") from error


def read_iothread_ids(tree: etree._ElementTree) -> frozenset[int]:
    """Read the domain's IO thread ids: `<iothreadids>` when present, else 1..`<iothreads>`."""
    root = tree.getroot()
    explicit = root.findall("iothreadids/iothread")
    if explicit:
        texts = [element.get("id", "") for element in explicit]
        ids = {_parse_vcpu_number(text) for text in texts}
        if None in ids:
            raise InvalidInput(f"the domain XML's <iothreadids> has non-numeric ids: {[t[:20] for t in texts[:5]]}")
        return frozenset(number for number in ids if number is not None)

    count_text = (root.findtext("iothreads") or "0").strip()
    count = _parse_vcpu_number(count_text)
    # Each IO thread is a host thread: more of them than vCPUs libvirt can
    # pin is no real VM, and the id set below would take gigabytes.
    if count is None or count > MAX_VCPUS:
        raise InvalidInput(
            f"the domain XML's <iothreads> is {count_text[:40]!r}, expected a number of IO threads up to {MAX_VCPUS}"
        )
    return frozenset(range(1, count + 1))


def read_guest_topology(tree: etree._ElementTree, vcpu_count: int) -> CpuTopology:
    """Read `<cpu><topology>`; without it, QEMU gives each vCPU a socket of its own."""
    element = tree.getroot().find("cpu/topology")
    if element is None:
        return CpuTopology(sockets=vcpu_count)

    counts = {}
    for attribute in ("sockets", "dies", "clusters", "cores", "threads"):
        text = element.get(attribute, "1")
        number = _parse_vcpu_number(text)
        if number is None or not 1 <= number <= MAX_VCPUS:
            raise InvalidInput(
                f"the domain XML's <topology {attribute}={text[:40]!r}> is not a number from 1 to {MAX_VCPUS}"
            )
        counts[attribute] = number
    # Dies and clusters only group cores further inside a socket; vCPU
    # numbering still runs thread, then core, then the larger units.
    sockets = counts["sockets"] * counts["dies"] * counts["clusters"]
    return CpuTopology(sockets=sockets, cores=counts["cores"], threads=counts["threads"])


def write_cputune(tree: etree._ElementTree, tune: CpuTune) -> None:
    """Replace the domain's pin elements with those of `tune`, keeping other `<cputune>` children."""
    desired = {
        "vcpupin": _build_vcpupins(dict(sorted(tune.vcpu_pins.items()))),
        "emulatorpin": []
        if tune.emulator_pin is None
        else [etree.Element("emulatorpin", cpuset=format_cpuset(tune.emulator_pin))],
        "iothreadpin": [
            etree.Element("iothreadpin", iothread=str(iothread), cpuset=format_cpuset(cpus))
            for iothread, cpus in sorted(tune.iothread_pins.items())
        ],
    }
    root = tree.getroot()
    cputune = root.find("cputune")
    if cputune is None:
        if not any(desired.values()):
            return
        cputune = _insert_cputune(root)

    # Each kind of pin goes where its first old element was.
    children = list(cputune)
    result: list[etree._Element] = []
    placed: set[str] = set()
    for child in children:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag not in _PIN_TAGS:
            result.append(child)
        elif tag not in placed:
            result += desired[tag]
            placed.add(tag)

    for index, tag in enumerate(_PIN_TAGS):
        if tag in placed:
            continue
        # After the last element of an earlier kind, else first.
        earlier = _PIN_TAGS[:index]
        position = next((len(result) - i for i, child in enumerate(reversed(result)) if child.tag in earlier), 0)
        result[position:position] = desired[tag]

    for child in children:
        cputune.remove(child)
    for child in result:
        cputune.append(child)
    _indent_children(cputune, _indent_unit(root))


def _build_vcpupins(pins: Mapping[int, frozenset[int]]) -> list[etree._Element]:
    """Build one `<vcpupin>` element per pin, in order.

    The elements come from parsing one string, which is about four times
    faster than creating them one by one, because lxml gives each new
    element a document of its own. vCPU numbers and cpusets contain only
    digits, commas and dashes, so they need no escaping.
    """
    markup = "".join(f'<vcpupin vcpu="{vcpu}" cpuset="{format_cpuset(cpus)}"/>' for vcpu, cpus in pins.items())
    return list(etree.fromstring(f"<cputune>{markup}</cputune>", _PARSER))


def serialize_domain(tree: etree._ElementTree) -> bytes:
    """Serialise the domain as UTF-8 without an XML declaration, as virt-launcher writes it.

    Empty elements get explicit end tags, `<source></source>`, as Go's
    encoding/xml writes them, so that a diff against virt-launcher's input
    shows only what the rewrite changed.
    """
    # Filtering on etree.Element skips comments and processing instructions
    # in C, which makes this loop more than twice as fast as testing each
    # node's tag in Python.
    for element in tree.iter(etree.Element):
        if element.text is None and len(element) == 0:
            element.text = ""
    return etree.tostring(tree, encoding="UTF-8", xml_declaration=False)


def build_domain_for_vmi(vmi: Vmi) -> bytes:
    """Build a minimal domain with the VMI's vCPU count and topology.

    `pinning-hook plan` uses it when no real domain XML is at hand. Only the
    elements that planning reads are filled in.
    """
    topology = vmi.topology
    name = f"{vmi.namespace}_{vmi.name}" if vmi.namespace else (vmi.name or "vmi")
    root = etree.Element("domain", type="kvm")
    etree.SubElement(root, "name").text = name
    etree.SubElement(root, "vcpu", placement="static").text = str(topology.vcpu_count)
    cpu = etree.SubElement(root, "cpu")
    etree.SubElement(
        cpu,
        "topology",
        sockets=str(topology.max_sockets or topology.sockets),
        cores=str(topology.cores),
        threads=str(topology.threads),
    )
    etree.indent(root, space="\t")
    return etree.tostring(root, encoding="UTF-8")


def _insert_cputune(root: etree._Element) -> etree._Element:
    cputune = etree.Element("cputune")
    anchors = [child for child in root if child.tag in _CPUTUNE_ANCHORS]
    if anchors:
        anchor = anchors[-1]
        anchor.addnext(cputune)
        # The new element takes over the anchor's tail, and the anchor
        # gets the indentation of its next sibling.
        cputune.tail = anchor.tail
        anchor.tail = _line_break(root)
    else:
        last = root[-1] if len(root) else None
        if last is not None:
            cputune.tail = last.tail
            last.tail = _line_break(root)
        else:
            cputune.tail = None
        root.append(cputune)
    return cputune


def _line_break(root: etree._Element) -> str | None:
    """Whitespace that puts a child of the root on its own line."""
    text = root.text or ""
    return text if "\n" in text else None


def _indent_unit(root: etree._Element) -> str | None:
    """Return the document's indentation step, such as a tab, or None for one-line XML."""
    text = root.text or ""
    if "\n" not in text:
        return None
    return text.rsplit("\n", 1)[1]


def _indent_children(parent: etree._Element, unit: str | None) -> None:
    """Put each child of `parent` on its own line, one `unit` deeper than `parent`."""
    if unit is None or len(parent) == 0:
        for child in parent:
            child.tail = None
        parent.text = None
        return

    parent_indent = _element_indent(parent)
    child_break = "\n" + parent_indent + unit
    parent.text = child_break
    for child in parent:
        child.tail = child_break
    parent[-1].tail = "\n" + parent_indent


def _element_indent(element: etree._Element) -> str:
    previous = element.getprevious()
    parent = element.getparent()
    if previous is not None:
        whitespace = previous.tail or ""
    else:
        whitespace = (parent.text if parent is not None else None) or ""
    return whitespace.rsplit("\n", 1)[1] if "\n" in whitespace else ""
