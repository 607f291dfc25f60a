"""The nastiest inputs found by probing and fuzzing, kept as plain cases in tests/corpus/.

Each directory is one case: `domain.xml` and `vmi.json` make an
OnDefineDomain request (the 4-vCPU launcher domain when `domain.xml` is
absent), or `request.bin` is sent as it is. `expected.json` gives the
status code and either a fragment of its message or the pins, for host
CPUs 0-3.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from collections.abc import Iterator

import grpc
import pytest
from conftest import GOLDEN_DIR, TESTS_DIR
from inprocess import call_raw, serve_in_process
from launcher_client import decode_fields, encode_bytes_fields
from lxml import etree

CORPUS_DIR = TESTS_DIR / "corpus"
CASES = sorted(path for path in CORPUS_DIR.iterdir() if path.is_dir())


@pytest.fixture(scope="module")
def hook_socket() -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="pinning-hook-") as directory:
        with serve_in_process(pathlib.Path(directory)) as socket_path:
            yield socket_path


def request_for(case: pathlib.Path) -> bytes:
    if (case / "request.bin").exists():
        return (case / "request.bin").read_bytes()
    domain_path = case / "domain.xml"
    domain = domain_path.read_bytes() if domain_path.exists() else (GOLDEN_DIR / "launcher-4vcpu.xml").read_bytes()
    return encode_bytes_fields({1: domain, 2: (case / "vmi.json").read_bytes()})


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case(hook_socket: pathlib.Path, case: pathlib.Path) -> None:
    expected = json.loads((case / "expected.json").read_text(encoding="utf-8"))

    code, details, response = call_raw(
        hook_socket, "/kubevirt.hooks.v1alpha3.Callbacks/OnDefineDomain", request_for(case)
    )

    assert code.name == expected["code"], details
    if code != grpc.StatusCode.OK:
        assert expected["fragment"] in details
        return
    domain = dict(decode_fields(response))[1]
    pins = {pin.get("vcpu"): pin.get("cpuset") for pin in etree.fromstring(domain).iterfind("cputune/vcpupin")}
    assert pins == expected["pins"]


def test_corpus_not_empty() -> None:
    assert len(CASES) >= 10
