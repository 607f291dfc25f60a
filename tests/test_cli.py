"""The pinning-hook command line: errors an operator meets first."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
from conftest import make_vmi


def run_cli(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    # Run from a directory without the source tree, so that the installed
    # package with its generated stubs is imported.
    return subprocess.run(
        [sys.executable, "-m", "pinning_hook", *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def write_json(path: pathlib.Path, document: object) -> pathlib.Path:
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--socket-dir", ""], "--socket-dir is empty"),
        (["--socket-name", ""], "--socket-name '' must be a plain file name"),
        (["--socket-name", "../x.sock"], "must be a plain file name"),
    ],
    ids=["empty-socket-dir", "empty-socket-name", "socket-name-with-path"],
)
def test_serve_rejects_bad_socket_options(tmp_path: pathlib.Path, args: list[str], fragment: str) -> None:
    result = run_cli("serve", "--log-format", "text", *args, cwd=tmp_path)

    assert result.returncode == 2
    assert fragment in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_socket_dir_that_is_a_file(tmp_path: pathlib.Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("")

    result = run_cli("serve", "--log-format", "text", "--socket-dir", str(regular), cwd=tmp_path)

    assert result.returncode == 1
    assert "is not a directory" in result.stderr


def test_plan_rejects_other_kinds(tmp_path: pathlib.Path) -> None:
    manifest = write_json(tmp_path / "pod.json", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})

    result = run_cli("plan", "--vmi", str(manifest), cwd=tmp_path)

    assert result.returncode == 2
    assert "the manifest is a 'Pod', not a VirtualMachineInstance or VirtualMachine" in result.stderr


def test_plan_warns_misplaced_vm_annotation(tmp_path: pathlib.Path) -> None:
    vmi = make_vmi(None)
    manifest = write_json(
        tmp_path / "vm.json",
        {
            "kind": "VirtualMachine",
            "metadata": {"name": "vm", "annotations": {"cpu-pinning.vm.kubevirt.io/pinning": '["0-1"]'}},
            "spec": {"template": {"spec": vmi["spec"]}},
        },
    )

    result = run_cli("plan", "--vmi", str(manifest), "--host-cpus", "0-3", cwd=tmp_path)

    assert result.returncode == 0
    assert "is on the VirtualMachine's metadata, which KubeVirt does not copy to the VMI" in result.stderr
    assert "move it to spec.template.metadata.annotations" in result.stderr


def test_plan_rejects_topology_beyond_limit(tmp_path: pathlib.Path) -> None:
    manifest = write_json(tmp_path / "vmi.json", make_vmi(["0-1"], cores=20000))

    result = run_cli("plan", "--vmi", str(manifest), cwd=tmp_path)

    assert result.returncode == 2
    assert "spec.domain.cpu gives 20000 vCPUs" in result.stderr


def test_plan_strict_logs_each_problem(tmp_path: pathlib.Path) -> None:
    vmi = make_vmi(["0-9", "-1-1"], annotations={"cpu-pinning.vm.kubevirt.io/policy": "strict"})
    manifest = write_json(tmp_path / "vmi.json", vmi)

    result = run_cli("plan", "--vmi", str(manifest), "--host-cpus", "0-3", cwd=tmp_path)

    assert result.returncode == 2
    assert "warning" in result.stderr
    assert "hint=" in result.stderr
    assert "the strict pinning policy rejects the pin list" in result.stderr


def test_annotation_json_error_shows_value(tmp_path: pathlib.Path) -> None:
    vmi = make_vmi(None, annotations={"cpu-pinning.vm.kubevirt.io/pinning": "['0-2']"})
    manifest = write_json(tmp_path / "vmi.json", vmi)

    result = run_cli("plan", "--vmi", str(manifest), cwd=tmp_path)

    assert result.returncode == 2
    assert "is not valid JSON" in result.stderr
    assert "\"['0-2']\"" in result.stderr


def test_verify_domain_flag_hint(tmp_path: pathlib.Path) -> None:
    manifest = write_json(tmp_path / "vmi.json", make_vmi(["0-1"]))

    result = run_cli("verify", "--vmi", str(manifest), "--domain", "domain.xml", cwd=tmp_path)

    assert result.returncode == 2
    assert "a domain XML file goes to --domain-xml" in result.stderr
