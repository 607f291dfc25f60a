"""Shared fixtures: VMI builders and paths to the golden domain XML files."""

from __future__ import annotations

import json
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

TESTS_DIR = pathlib.Path(__file__).parent
REPO_ROOT = TESTS_DIR.parent
GOLDEN_DIR = TESTS_DIR / "golden"

# tools/ contains the virt-launcher stand-in that the server tests drive.
sys.path.insert(0, str(REPO_ROOT / "tools"))

PIN_LIST_ANNOTATION = "cpu-pinning.vm.kubevirt.io/pinning"

# Property tests draw the same examples on every run, so a failure in CI
# reproduces anywhere. `pytest --hypothesis-profile=explore` draws new,
# random examples and more of them, to hunt for new failures.
settings.register_profile("reproducible", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile("reproducible")


def make_vmi(
    pins: list[str] | None = None,
    *,
    name: str = "fedora-pinned",
    namespace: str = "default",
    cores: int = 2,
    annotations: dict[str, str] | None = None,
    cpu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a VMI document with the pin list in the annotation, as users write it."""
    all_annotations = dict(annotations or {})
    if pins is not None:
        all_annotations[PIN_LIST_ANNOTATION] = json.dumps(pins)
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "3b0e9ae2-55a5-4a7c-9d62-0c1f6a1c4e21",
            "annotations": all_annotations,
        },
        "spec": {"domain": {"cpu": {"cores": cores, "sockets": 1, "threads": 1, **(cpu or {})}}},
    }


def vmi_bytes(pins: list[str] | None = None, **kwargs: Any) -> bytes:
    return json.dumps(make_vmi(pins, **kwargs)).encode()


@pytest.fixture
def launcher_domain() -> bytes:
    """A 4-vCPU domain in virt-launcher's encoding: tabs, explicit end tags."""
    return (GOLDEN_DIR / "launcher-4vcpu.xml").read_bytes()


@pytest.fixture(scope="session")
def virt() -> Any:
    """The process's one embedded libvirt (qemu:///embed), with QEMU under TCG."""
    import realvirt

    realvirt.require_libvirt()
    return realvirt.shared_session()


@pytest.fixture
def socket_dir() -> Iterator[pathlib.Path]:
    """An empty directory with a short path, since a unix socket path has at most 107 bytes."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="pinning-hook-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
