"""Real libvirt and QEMU for tests and the demo, with no libvirtd daemon.

This module owns the harness that runs domains under the real libvirt
QEMU driver and QEMU with TCG (Debian bookworm: libvirt 9.0.0, QEMU 7.2):

- ``EmbeddedLibvirt`` and ``shared_session()``: a private ``qemu:///embed``
  driver in a temporary root directory, with its own qemu.conf and event-loop
  thread, that destroys its domains and removes the directory when it closes.
- ``libvirt_pins()`` and ``kernel_pins()``: libvirt's and the kernel's view of
  which host CPUs each vCPU may run on.
- ``run_virsh_vcpupin()``: the real ``virsh`` binary, on an embed root of its
  own, returning the text that ``virsh vcpupin`` printed.
- ``require_libvirt()``: skips tests when the host lacks libvirt, or fails
  them when the ``CI`` environment variable is ``true``.

libvirt 9.0.0 lets one process open only one embed root for its whole
lifetime, even after every connection to it is closed. So one pytest process
shares one ``EmbeddedLibvirt``, which ``shared_session()`` returns.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import hashlib
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, urlparse

if TYPE_CHECKING:
    import libvirt

# The embed driver reads ROOT/etc/qemu.conf when the connection opens.
# QEMU runs as root because the default user libvirt-qemu cannot read files
# in the temporary root (mode 0700, owned by root). stdio_handler = "file"
# writes QEMU's output to ROOT/log/qemu/NAME.log, so no virtlogd is needed.
# libvirt 9.0.0 still looks up the user and group libvirt-qemu before it
# reads this file, so both must exist on the host.
QEMU_CONF = 'user = "root"\ngroup = "root"\nstdio_handler = "file"\n'

QEMU_USER_AND_GROUP = "libvirt-qemu"
VIRSH = "virsh"
QEMU_BINARY = "qemu-system-x86_64"
INSTALL_HINT = "As root, 'make test' installs them (tools/install-system-deps.sh, then .[test] into .venv)."

# QEMU started with -name guest=NAME,debug-threads=on names each vCPU thread
# "CPU <index>/<accelerator>", for example "CPU 0/TCG".
VCPU_THREAD_NAME = re.compile(r"CPU (\d+)/(TCG|KVM)")

_VIRSH_BEGIN = "realvirt-vcpupin-begin"
_VIRSH_END = "realvirt-vcpupin-end"

_event_impl_registered = False
_embed_root_opened: Path | None = None
_shared_session: EmbeddedLibvirt | None = None


class VirshError(RuntimeError):
    """A virsh run that failed, with its command line and output."""


def missing_requirements(python_binding: bool = True) -> list[str]:
    """List what this host lacks to run real libvirt tests, empty if nothing.

    With python_binding=False, the libvirt Python module is not required:
    run_virsh_vcpupin() needs only the virsh binary.
    """
    missing = []
    if python_binding and importlib.util.find_spec("libvirt") is None:
        missing.append(
            "Python module 'libvirt' (pip package libvirt-python, built with libvirt-dev, pkg-config and gcc)"
        )
    if shutil.which(VIRSH) is None:
        missing.append(f"'{VIRSH}' (Debian package libvirt-clients)")
    if shutil.which(QEMU_BINARY) is None:
        missing.append(f"'{QEMU_BINARY}' (Debian package qemu-system-x86)")
    if not list(Path("/usr/lib").glob("*/libvirt/connection-driver/libvirt_driver_qemu.so")):
        missing.append("libvirt QEMU driver (Debian package libvirt-daemon-driver-qemu)")
    if os.geteuid() != 0:
        missing.append("root privileges (the embedded QEMU driver runs QEMU as root)")
    try:
        pwd.getpwnam(QEMU_USER_AND_GROUP)
    except KeyError:
        missing.append(f"system user '{QEMU_USER_AND_GROUP}'")
    try:
        grp.getgrnam(QEMU_USER_AND_GROUP)
    except KeyError:
        missing.append(f"system group '{QEMU_USER_AND_GROUP}'")
    return missing


def libvirt_available() -> bool:
    """Return whether this host can run real libvirt tests."""
    return not missing_requirements()


def require_libvirt() -> None:
    """Skip the calling test when libvirt is missing, or fail it when CI=true."""
    missing = missing_requirements()
    if not missing:
        return

    # Imported here so that the demo can use this module without pytest.
    import pytest

    reason = "Real libvirt tests need: " + "; ".join(missing) + ". " + INSTALL_HINT
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def host_cpus() -> frozenset[int]:
    """Return the host CPUs that are online, from /sys/devices/system/cpu/online."""
    return parse_cpu_list(Path("/sys/devices/system/cpu/online").read_text())


def parse_cpu_list(text: str) -> frozenset[int]:
    """Parse a kernel or virsh CPU list such as '0-2,5' into CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


class _EventLoopThread:
    """A thread that runs libvirt's default event loop until stopped."""

    def __init__(self) -> None:
        self._stop_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name="libvirt-event-loop", daemon=True)

    def start(self) -> None:
        import libvirt

        global _event_impl_registered
        if not _event_impl_registered:
            libvirt.virEventRegisterDefaultImpl()
            _event_impl_registered = True
        self._thread.start()

    def stop(self) -> None:
        import libvirt

        self._stop_requested.set()
        # A timer with a 0 ms period fires on every iteration, so the blocked
        # virEventRunDefaultImpl() call returns and the loop checks the flag.
        wake_timer = libvirt.virEventAddTimeout(0, lambda timer, opaque: None, None)
        self._thread.join(timeout=10)
        libvirt.virEventRemoveTimeout(wake_timer)

    def _run(self) -> None:
        import libvirt

        while not self._stop_requested.is_set():
            libvirt.virEventRunDefaultImpl()


def create_embed_root(prefix: str, capabilities_cache_from: Path | None = None) -> Path:
    """Create a temporary embed root with ROOT/etc/qemu.conf.

    When ``capabilities_cache_from`` is another embed root, its
    cache/qemu/capabilities directory is copied, which saves the QEMU probe
    on the first domain start (3.7 to 3.9 s measured on a 2-core VM). libvirt checks
    the cached files against the QEMU binary and its own version and probes
    again when they are stale.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    (root / "etc").mkdir()
    (root / "etc" / "qemu.conf").write_text(QEMU_CONF)

    if capabilities_cache_from is not None:
        source = capabilities_cache_from / "cache" / "qemu" / "capabilities"
        if source.is_dir():
            shutil.copytree(source, root / "cache" / "qemu" / "capabilities")
    return root


class EmbeddedLibvirt:
    """A private ``qemu:///embed`` QEMU driver in a temporary root directory.

    Use it as a context manager, once per process (see the module docstring).
    Every domain on the connection belongs to this root, so closing destroys
    and undefines all of them.
    """

    def __init__(self, capabilities_cache_from: Path | None = None) -> None:
        self._capabilities_cache_from = capabilities_cache_from
        self._root: Path | None = None
        self._connection: libvirt.virConnect | None = None
        self._event_loop: _EventLoopThread | None = None

    @property
    def root(self) -> Path:
        """The embed root directory."""
        if self._root is None:
            raise RuntimeError("EmbeddedLibvirt is not open: use it in a 'with' block")
        return self._root

    @property
    def uri(self) -> str:
        """The libvirt connection URI of the embed root."""
        return f"qemu:///embed?root={self.root}"

    @property
    def connection(self) -> libvirt.virConnect:
        """The open connection to the embedded driver."""
        if self._connection is None:
            raise RuntimeError("EmbeddedLibvirt is not open: use it in a 'with' block")
        return self._connection

    def __enter__(self) -> EmbeddedLibvirt:
        import libvirt

        global _embed_root_opened
        if _embed_root_opened is not None:
            raise RuntimeError(
                f"This process already opened the embed root {_embed_root_opened}, "
                "and libvirt allows one embed root per process: "
                "use realvirt.shared_session() in every test"
            )

        self._root = create_embed_root("realvirt-", self._capabilities_cache_from)
        self._event_loop = _EventLoopThread()
        self._event_loop.start()
        try:
            self._connection = libvirt.open(self.uri)
        except BaseException:
            self.close()
            raise
        _embed_root_opened = self._root
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Destroy and undefine every domain, close, and remove the root.

        A QEMU process that libvirt failed to destroy is killed, and the
        first libvirt error is raised after the cleanup.
        """
        import libvirt

        first_error: libvirt.libvirtError | None = None
        if self._connection is not None:
            for domain in self._connection.listAllDomains(0):
                try:
                    self.stop_domain(domain)
                except libvirt.libvirtError as error:
                    first_error = first_error or error
            self._connection.close()
            self._connection = None
        if self._event_loop is not None:
            self._event_loop.stop()
            self._event_loop = None
        if self._root is not None:
            _stop_leftover_qemu(self._root)
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        if first_error is not None:
            raise first_error

    def start_domain(self, xml: str) -> libvirt.virDomain:
        """Define the domain XML and start it, returning the running domain."""
        domain = self.connection.defineXML(xml)
        try:
            domain.create()
        except BaseException:
            domain.undefine()
            raise
        return domain

    def stop_domain(self, domain: libvirt.virDomain) -> None:
        """Destroy the domain if it runs, then undefine it."""
        if domain.isActive():
            domain.destroy()
        if domain.isPersistent():
            domain.undefine()

    @contextlib.contextmanager
    def running_domain(self, xml: str) -> Iterator[libvirt.virDomain]:
        """Start the domain XML for the ``with`` block, then stop it."""
        domain = self.start_domain(xml)
        try:
            yield domain
        finally:
            self.stop_domain(domain)


def shared_session() -> EmbeddedLibvirt:
    """Return this process's ``EmbeddedLibvirt``, opening it on first use.

    It closes at interpreter exit, which pytest reaches after its last test.
    """
    global _shared_session
    if _shared_session is None:
        session = EmbeddedLibvirt()
        session.__enter__()
        atexit.register(session.close)
        _shared_session = session
    return _shared_session


def libvirt_pins(domain: libvirt.virDomain) -> dict[int, frozenset[int]]:
    """Return libvirt's live vCPU pins, ``{vcpu: host CPUs}``, from vcpuPinInfo."""
    # libvirt-python annotates vcpuPinInfo() as returning str, but it returns
    # one tuple of booleans per vCPU, indexed by host CPU.
    pin_rows = cast(Sequence[tuple[bool, ...]], domain.vcpuPinInfo(0))
    return {vcpu: frozenset(cpu for cpu, allowed in enumerate(row) if allowed) for vcpu, row in enumerate(pin_rows)}


def qemu_pid(domain: libvirt.virDomain) -> int:
    """Return the pid of a running embedded domain's QEMU process.

    libvirt 9.0.0 has no public API for this pid, so it comes from the pid
    file that the embed driver writes at ROOT/run/qemu/NAME.pid. The process
    must still be QEMU started for that domain name.
    """
    query = parse_qs(urlparse(domain.connect().getURI()).query)
    if "root" not in query:
        raise ValueError(f"Domain {domain.name()!r} is not on a qemu:///embed connection")
    pid_file = Path(query["root"][0]) / "run" / "qemu" / f"{domain.name()}.pid"
    pid = int(pid_file.read_text().strip())

    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    name_option = "guest=" + domain.name().replace(",", ",,") + ","
    if not any(argument.startswith(name_option) for argument in arguments):
        raise RuntimeError(f"Process {pid} from {pid_file} is not QEMU for domain {domain.name()!r}")
    return pid


def kernel_pins(domain: libvirt.virDomain) -> dict[int, frozenset[int]]:
    """Return the kernel's vCPU affinity, ``{vcpu: host CPUs}``.

    Reads Cpus_allowed_list of each QEMU thread named "CPU <n>/TCG" (or
    "/KVM") under /proc/<qemu pid>/task/*/status.
    """
    pid = qemu_pid(domain)
    pins: dict[int, frozenset[int]] = {}
    thread_names: list[str] = []
    for status_file in sorted(Path(f"/proc/{pid}/task").glob("*/status")):
        try:
            status_text = status_file.read_text()
        except FileNotFoundError:
            continue  # The thread exited during the scan.

        fields = dict(line.split(":\t", 1) for line in status_text.splitlines() if ":\t" in line)
        thread_name = fields["Name"].strip()
        thread_names.append(thread_name)
        match = VCPU_THREAD_NAME.fullmatch(thread_name)
        if match is not None:
            pins[int(match.group(1))] = parse_cpu_list(fields["Cpus_allowed_list"])

    if not pins:
        raise RuntimeError(
            f"QEMU process {pid} has no thread named 'CPU <n>/TCG' "
            f"(QEMU without multi-threaded TCG names one 'ALL CPUs/TCG'); "
            f"threads: {thread_names}"
        )
    return pins


def parse_virsh_vcpupin(text: str) -> dict[int, frozenset[int]]:
    """Parse the table that ``virsh vcpupin NAME`` prints into ``{vcpu: host CPUs}``."""
    pins: dict[int, frozenset[int]] = {}
    for line in text.splitlines():
        columns = line.split()
        if len(columns) == 2 and columns[0].isdigit():
            pins[int(columns[0])] = parse_cpu_list(columns[1])
    return pins


def run_virsh_vcpupin(
    domain_xml_file: Path,
    capabilities_cache_from: Path | None = None,
    timeout: float = 120.0,
) -> str:
    """Define, start, query and destroy a domain with one virsh process.

    The virsh process runs on a new embed root of its own and with LC_ALL=C,
    so its messages are untranslated. Returns exactly the text that
    ``virsh vcpupin NAME`` printed. Raises ``VirshError`` when any command
    fails, because virsh runs the remaining ';'-separated commands after a
    failed one and its exit status is that of the last command only.
    """
    domain_name = ElementTree.parse(domain_xml_file).getroot().findtext("name")
    if not domain_name:
        raise ValueError(f"Domain XML {domain_xml_file} has no <name>")

    root = create_embed_root("realvirt-virsh-", capabilities_cache_from)
    uri = f"qemu:///embed?root={root}"
    quoted_name = shlex.quote(domain_name)
    commands = (
        f"define {shlex.quote(str(domain_xml_file))}; start {quoted_name}; "
        f"echo {_VIRSH_BEGIN}; vcpupin {quoted_name}; echo {_VIRSH_END}; "
        f"destroy {quoted_name}"
    )
    command_line = [VIRSH, "-c", uri, commands]
    try:
        completed = subprocess.run(
            command_line,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    finally:
        _stop_leftover_qemu(root)
        shutil.rmtree(root, ignore_errors=True)

    stdout = completed.stdout
    failed = completed.returncode != 0 or any(line.startswith("error:") for line in completed.stderr.splitlines())
    begin = stdout.find(_VIRSH_BEGIN + "\n")
    end = stdout.find(_VIRSH_END + "\n")
    if failed or begin < 0 or end < begin:
        raise VirshError(
            f"virsh failed with exit status {completed.returncode}: "
            f"{shlex.join(command_line)}\n"
            f"stdout:\n{stdout}\nstderr:\n{completed.stderr}"
        )
    return stdout[begin + len(_VIRSH_BEGIN) + 1 : end]


def _stop_leftover_qemu(root: Path) -> None:
    """Kill QEMU processes that are still running on the embed root ``root``.

    virsh exits without stopping the domains it started on an embed root, for
    example after a timeout, and a failed destroy leaves QEMU running too.
    Only processes whose command line names a file under ``root`` are killed.
    """
    for pid_file in (root / "run" / "qemu").glob("*.pid"):
        if pid_file.name == "driver.pid":
            continue
        try:
            pid = int(pid_file.read_text().strip())
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        except (FileNotFoundError, ValueError):
            continue
        if str(root) not in arguments:
            continue

        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _remove_domain_cgroups(root)


def _remove_domain_cgroups(root: Path) -> None:
    """Remove the cgroups of killed domains that ran on the embed root ``root``.

    libvirt removes a domain's cgroups when it stops the domain itself, but
    not after its QEMU process was killed outside libvirt. libvirt 9.0.0
    names them qemu-embed-<first 8 hex digits of the SHA-256 of the root
    path>-<id>-<name>.libvirt-qemu under a "machine" cgroup (as observed on
    cgroup v1). A cgroup that still has processes stays.
    """
    root_hash = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    partitions = [
        *Path("/sys/fs/cgroup").glob("*/machine"),
        Path("/sys/fs/cgroup/machine"),
    ]
    for partition in partitions:
        for cgroup in partition.glob(f"qemu-embed-{root_hash}-*"):
            children = [path for path in cgroup.rglob("*") if path.is_dir()]
            for directory in sorted(children, key=lambda path: len(path.parts), reverse=True):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                cgroup.rmdir()
