"""What the container image does, checked without a container engine.

No Docker engine runs in CI, so these tests carry out the Dockerfile with
the host's own tools, reading the instructions from the Dockerfile itself:

1. Copy the files that the build stage COPYs and build the wheel with pip,
   which generates the gRPC stubs from proto/.
2. Install the wheel into a fresh virtual environment made with the system
   Python, as the runtime stage installs it into the slim Python image.
3. Start the ENTRYPOINT with the runtime ENV as the USER: uid and gid 107,
   no supplementary groups, no capabilities, no new privileges. It runs in
   a private mount namespace whose root filesystem is read-only except for
   the socket directory, like a pod with readOnlyRootFilesystem.
4. Call Info and OnDefineDomain as virt-launcher does, then Shutdown.

The wheel and the environment are built once per session.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
from conftest import REPO_ROOT, vmi_bytes
from launcher_client import LauncherClient, find_socket
from test_server import pins_in

DOCKERFILE = REPO_ROOT / "Dockerfile"
# The interpreter for the environment. The repository's own may live below
# /root, which uid 107 cannot enter, while the system one is readable by all.
SYSTEM_PYTHON = pathlib.Path("/usr/bin/python3")
# What .dockerignore keeps out of the build context.
IGNORED_IN_CONTEXT = shutil.ignore_patterns("__pycache__", "*_pb2.py", "*_pb2_grpc.py")


def read_stages(dockerfile: pathlib.Path) -> list[list[tuple[str, str]]]:
    """Split a Dockerfile into stages of (INSTRUCTION, arguments), joining continued lines."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue

        instruction, _, arguments = (logical + line).partition(" ")
        logical = ""
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def require(condition: bool, reason: str) -> None:
    """Skip the test when the host lacks something, or fail it when CI=true."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def stages() -> list[list[tuple[str, str]]]:
    parsed = read_stages(DOCKERFILE)
    assert len(parsed) == 2, "expected a build stage and a runtime stage"
    return parsed


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The runtime stage's ENV, USER and ENTRYPOINT."""

    env: dict[str, str]
    user: str
    entrypoint: list[str]


@pytest.fixture(scope="module")
def runtime(stages: list[list[tuple[str, str]]]) -> Runtime:
    stage = stages[-1]
    environment = dict(item.split("=", 1) for env in instructions(stage, "ENV") for item in shlex.split(env))
    (user,) = instructions(stage, "USER")
    (entrypoint,) = instructions(stage, "ENTRYPOINT")
    return Runtime(env=environment, user=user, entrypoint=json.loads(entrypoint))


@pytest.fixture(scope="module")
def image_root(stages: list[list[tuple[str, str]]]) -> Iterator[pathlib.Path]:
    """Build the wheel as the build stage does and install it into a fresh environment."""
    require(SYSTEM_PYTHON.exists(), f"{SYSTEM_PYTHON} is missing (Debian package python3)")
    root = pathlib.Path(tempfile.mkdtemp(prefix="pinning-hook-image-"))
    # uid 107 must reach the environment's files, as in the image.
    root.chmod(0o755)
    try:
        context = root / "src"
        for arguments in instructions(stages[0], "COPY"):
            *sources, destination = shlex.split(arguments)
            for source in sources:
                target = context / destination
                if destination.endswith("/"):
                    target = target / pathlib.Path(source).name
                if (REPO_ROOT / source).is_dir():
                    shutil.copytree(REPO_ROOT / source, target, ignore=IGNORED_IN_CONTEXT)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO_ROOT / source, target)

        wheels = root / "wheels"
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, context], check=True)
        (wheel,) = wheels.glob("pinning_hook-*.whl")

        environment = root / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", environment], check=True)
        install = [*pip, "--python", environment / "bin" / "python", "install", "--quiet", wheel]
        subprocess.run(install, check=True, capture_output=True)
        yield environment
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def socket_dir() -> Iterator[pathlib.Path]:
    """A socket directory that only uid 107 may write, as the hooks emptyDir in the pod."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="pinning-hook-sockets-"))
    try:
        os.chown(directory, 107, 107)
        directory.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start_as_in_pod(image_root: pathlib.Path, runtime: Runtime, socket_dir: pathlib.Path) -> subprocess.Popen[str]:
    """Start the image's ENTRYPOINT as its USER, with the root filesystem read-only."""
    require(os.geteuid() == 0, "running as uid 107 on a read-only root needs root to set it up")
    require(shutil.which("unshare") is not None and shutil.which("setpriv") is not None, "util-linux is missing")

    uid, _, gid = runtime.user.partition(":")
    # The first argument of `sh -c` is $0: the socket directory. It is made
    # a mount of its own before / is remounted read-only, so it stays writable.
    script = (
        'mount --bind "$0" "$0" && mount -o remount,bind,ro / && '
        f"exec setpriv --reuid={uid} --regid={gid or uid} --clear-groups --no-new-privs "
        '--inh-caps=-all --bounding-set=-all -- "$@"'
    )
    # KubeVirt appends the hookSidecars args. --socket-dir replaces the pod's
    # /var/run/kubevirt-hooks.
    command = [*runtime.entrypoint, "--version", "v1alpha3", "--socket-dir", str(socket_dir)]
    environment = {
        "PATH": f"{image_root / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        # The home directory of a uid that has no passwd entry in the image.
        "HOME": "/",
        **runtime.env,
    }
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, str(socket_dir), *command],
        env=environment,
        cwd="/",
        stderr=subprocess.PIPE,
        text=True,
    )


def process_status(pid: int) -> dict[str, str]:
    lines = pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def root_mount_options(pid: int) -> list[str]:
    """Return the options of the process's mount at /, the topmost one when mounts are stacked."""
    mounts = [line.split() for line in pathlib.Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
    # Field 5 is the mount point and field 6 its per-mount options.
    return [mount[5].split(",") for mount in mounts if mount[4] == "/"][-1]


def test_runtime_stage_runs_non_root(runtime: Runtime) -> None:
    assert runtime.user == "107:107"
    assert runtime.entrypoint == ["pinning-hook", "serve"]
    assert runtime.env == {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}


def test_image_serves_as_uid_107(
    image_root: pathlib.Path,
    runtime: Runtime,
    socket_dir: pathlib.Path,
    launcher_domain: bytes,
) -> None:
    process = start_as_in_pod(image_root, runtime, socket_dir)
    try:
        socket_path = find_socket(socket_dir, timeout=30)
        status = process_status(process.pid)
        root_mount = root_mount_options(process.pid)
        client = LauncherClient(socket_path)
        info = client.info()
        output = client.on_define_domain(launcher_domain, vmi_bytes(["0-0"], cores=4), "v1alpha3")
        client.shutdown()
        exit_code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        stderr = process.communicate()[1]

    assert socket_path.name == "pinning-hook.sock"
    assert socket_path.parent == socket_dir
    assert status["Uid"].split() == ["107"] * 4
    assert status["Gid"].split() == ["107"] * 4
    assert status["Groups"] == ""
    assert int(status["CapEff"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert "ro" in root_mount
    assert info.versions == ("v1alpha3",)
    assert pins_in(output) == {0: "0"}
    assert exit_code == 0, stderr
    # The socket was the only file it wrote, and it is gone after Shutdown.
    assert list(socket_dir.iterdir()) == []
    assert all(json.loads(line)["level"] == "info" for line in stderr.splitlines())
