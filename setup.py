"""Build hook that generates the gRPC stubs from proto/ into the package.

The stubs are build output: they are never committed or edited by hand, and
`pip install .` regenerates them from the .proto files every time.
"""

from __future__ import annotations

import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

PROTO_ROOT = pathlib.Path(__file__).parent / "proto"


def stub_paths(output_root: pathlib.Path) -> list[str]:
    """List the modules that protoc writes for the .proto files."""
    paths = []
    for proto in sorted(PROTO_ROOT.rglob("*.proto")):
        stem = output_root / proto.relative_to(PROTO_ROOT).with_suffix("")
        paths += [f"{stem}_pb2.py", f"{stem}_pb2_grpc.py"]
    return paths


def generate_stubs(output_root: pathlib.Path) -> None:
    """Run protoc over every .proto file, writing the modules below output_root."""
    # Imported here because grpcio-tools is a build requirement only.
    from grpc_tools import protoc

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files found under {PROTO_ROOT}")

    output_root.mkdir(parents=True, exist_ok=True)
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--python_out={output_root}",
        f"--grpc_python_out={output_root}",
        *(str(proto) for proto in protos),
    ]
    if protoc.main(arguments) != 0:
        raise RuntimeError(f"protoc failed on {[p.name for p in protos]}")


class BuildPyWithStubs(build_py):
    """build_py that adds the generated stubs to the built package."""

    def run(self) -> None:
        super().run()
        generate_stubs(pathlib.Path(self.build_lib))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *stub_paths(pathlib.Path(self.build_lib))]


setup(cmdclass={"build_py": BuildPyWithStubs})
