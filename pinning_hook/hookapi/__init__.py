"""KubeVirt's hook API, as Python stubs generated from proto/ at build time.

The `*_pb2.py` and `*_pb2_grpc.py` modules exist only in an installed copy of
the package: `pip install .` writes them from proto/pinning_hook/hookapi.
"""
