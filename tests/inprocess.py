"""The hook servicer on a real gRPC server inside the test process.

Tests that need to reach into the servicer, such as one whose host-CPU
source fails, or that send many requests cheaply, serve it here with the
product's own `server.build_handlers`, on a unix socket in a temporary
directory. The subprocess in sidecar.py stays the way to test `serve`.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc

from pinning_hook import server


@contextlib.contextmanager
def serve_in_process(
    socket_dir: pathlib.Path,
    servicer_type: type[server.HookServicer] = server.HookServicer,
    host_cpus: frozenset[int] | None = frozenset(range(4)),
) -> Iterator[pathlib.Path]:
    """Serve a `servicer_type` on a socket in `socket_dir` and yield the socket's path."""
    settings = server.ServerSettings(socket_dir=socket_dir, host_cpus=host_cpus)
    servicer = servicer_type(settings, threading.Event())
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=server.WORKER_THREADS),
        handlers=server.build_handlers(servicer, settings.versions),
    )
    grpc_server.add_insecure_port(f"unix:{settings.socket_path}")
    grpc_server.start()
    try:
        yield settings.socket_path
    finally:
        grpc_server.stop(None).wait()


def call_raw(socket_path: pathlib.Path, method: str, request: bytes) -> tuple[grpc.StatusCode, str, bytes]:
    """Send request bytes as they are and return the status code, its details and the response bytes."""
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        call = channel.unary_unary(method, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
        try:
            response = call(request, timeout=30)
        except grpc.RpcError as error:
            return error.code(), error.details() or "", b""
    return grpc.StatusCode.OK, "", response


class RecordingHandler(logging.Handler):
    """Keeps every record logged under the `pinning_hook` logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def recorded_logs() -> Iterator[list[logging.LogRecord]]:
    """Record the package's log records for the `with` block, then restore its logger."""
    logger = logging.getLogger("pinning_hook")
    handler = RecordingHandler()
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler.records
    finally:
        logger.handlers[:], level, logger.propagate = saved[0], saved[1], saved[2]
        logger.setLevel(level)
