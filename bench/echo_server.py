"""The floor for OnDefineDomain: a gRPC server that sends the domain XML back unchanged.

It runs on the same grpcio, over a unix socket, with the same thread pool
size, message limits and message types as `pinning-hook serve`, but does no
work: it decodes OnDefineDomainParams and returns an OnDefineDomainResult
that carries the request's domainXML. What the sidecar takes beyond this
server's round trip, and beyond parsing and serialising the XML once, is
the sidecar's own cost.

Usage: echo_server.py SOCKET_PATH. It serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
import pinning_hook.hookapi.v1alpha3_pb2 as v1alpha3_pb2

from pinning_hook import server as hook_server


def echo(request: Any, context: grpc.ServicerContext) -> Any:
    return v1alpha3_pb2.OnDefineDomainResult(domainXML=request.domainXML)


def main(socket_path: str) -> int:
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())

    handler = grpc.method_handlers_generic_handler(
        "kubevirt.hooks.v1alpha3.Callbacks",
        {
            hook_server.ON_DEFINE_DOMAIN: grpc.unary_unary_rpc_method_handler(
                echo,
                request_deserializer=v1alpha3_pb2.OnDefineDomainParams.FromString,
                response_serializer=v1alpha3_pb2.OnDefineDomainResult.SerializeToString,
            )
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=hook_server.WORKER_THREADS),
        handlers=[handler],
        options=[
            ("grpc.max_receive_message_length", hook_server.MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", hook_server.MAX_MESSAGE_BYTES),
        ],
    )
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    while not stop_requested.wait(timeout=0.5):
        pass
    server.stop(1.0).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
