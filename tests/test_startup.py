"""What `pinning-hook serve` loads before it binds its socket.

At 200m CPU every CPU-second of start-up costs five seconds of wall
time, and virt-launcher gives Info a 1 s deadline once the socket exists.
`serve` therefore imports only what serving needs: no PyYAML, which only
`plan` uses, and no grpcio-tools, which only the build uses to generate
the stubs.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

# Runs `serve` through the real command line, with server.serve replaced
# by a function that prints the loaded modules instead of serving.
PRINT_SERVE_IMPORTS = """
import sys
from pinning_hook import cli, server

def print_modules(settings):
    print(" ".join(sorted(sys.modules)))
    return 0

server.serve = print_modules
sys.exit(cli.main(["serve", "--socket-dir", "."]))
"""


def serve_imports(work_dir: pathlib.Path) -> set[str]:
    # Run from a directory without the source tree, so that the installed
    # package, which carries the generated stubs, is imported.
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SERVE_IMPORTS],
        cwd=work_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def test_serve_skips_yaml(tmp_path: pathlib.Path) -> None:
    modules = serve_imports(tmp_path)

    assert "pinning_hook.server" in modules
    assert "yaml" not in modules


def test_serve_skips_stub_generator(tmp_path: pathlib.Path) -> None:
    modules = serve_imports(tmp_path)

    assert "pinning_hook.hookapi.v1alpha3_pb2" in modules
    assert "grpc_tools" not in modules
