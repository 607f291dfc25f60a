"""The domain XML parser expands no entity and loads no DTD, file or URL.

parse_domain rejects every DOCTYPE, so the tests that prove the parser's
own settings call the parser directly with documents that carry one.
"""

from __future__ import annotations

import pathlib
import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
from conftest import vmi_bytes
from inprocess import serve_in_process
from launcher_client import LauncherClient
from lxml import etree

from pinning_hook import domainxml
from pinning_hook.errors import InvalidInput

# The parser that parse_domain uses, with its settings.
PARSER = domainxml._PARSER

SECRET = "pinning-hook-secret-file-content"


def billion_laughs(levels: int = 10) -> bytes:
    """An entity bomb: each level references the previous one ten times, 10**levels "lol" in all."""
    entities = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels):
        entities.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return (
        f"<!DOCTYPE domain [{''.join(entities)}]><domain><vcpu>2</vcpu><name>&lol{levels - 1};</name></domain>"
    ).encode()


def external_entity(url: str) -> bytes:
    return f'<!DOCTYPE domain [<!ENTITY x SYSTEM "{url}">]><domain><vcpu>2</vcpu><name>&x;</name></domain>'.encode()


@pytest.fixture
def secret_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP listener on loopback that records what any connection sends, for at most 5 s."""
    server_socket = socket.create_server(("127.0.0.1", 0))
    server_socket.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        for _ in range(25):
            if stop.is_set():
                return
            try:
                connection, _ = server_socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(0.5)
                try:
                    received.append(connection.recv(1024))
                except TimeoutError:
                    received.append(b"")

    thread = threading.Thread(target=accept)
    thread.start()
    yield server_socket.getsockname()[1], received
    stop.set()
    thread.join()
    server_socket.close()


def test_internal_entity_not_expanded() -> None:
    document = b'<!DOCTYPE domain [<!ENTITY a "expanded">]><domain><name>&a;</name></domain>'

    root = etree.fromstring(document, PARSER)

    assert root.find("name").text is None
    assert b"expanded" not in etree.tostring(root)


def test_external_entity_not_read(secret_file: pathlib.Path) -> None:
    root = etree.fromstring(external_entity(secret_file.as_uri()), PARSER)

    assert SECRET.encode() not in etree.tostring(root)


def test_external_dtd_not_loaded(tmp_path: pathlib.Path) -> None:
    dtd = tmp_path / "domain.dtd"
    dtd.write_text('<!ATTLIST vcpu placement CDATA "from-dtd">')
    document = f'<!DOCTYPE domain SYSTEM "{dtd.as_uri()}"><domain><vcpu>2</vcpu></domain>'.encode()

    tree = etree.ElementTree(etree.fromstring(document, PARSER))

    assert tree.docinfo.externalDTD is None


def test_entity_bomb_not_expanded() -> None:
    try:
        root = etree.fromstring(billion_laughs(), PARSER)
    except etree.XMLSyntaxError as error:
        # libxml2 may also stop the document at its amplification limit.
        assert "amplification" in str(error)
    else:
        assert len(etree.tostring(root)) < 10_000


@pytest.mark.parametrize(
    "document",
    [
        b"<domain><vcpu>2</vcpu>" + b"<a>" * 300 + b"</a>" * 300 + b"</domain>",
        b"<domain><vcpu>2</vcpu><" + b"n" * 60_000 + b"/></domain>",
    ],
    ids=["depth-300", "name-60000-characters"],
)
def test_huge_tree_limits_apply(document: bytes) -> None:
    """libxml2's limits without huge_tree: depth 256, names of 50,000 characters."""
    with pytest.raises(InvalidInput, match="the domain XML is not well-formed"):
        domainxml.parse_domain(document)


@pytest.mark.parametrize("kind", ["dtd", "entity"])
def test_no_network_access(listener: tuple[int, list[bytes]], kind: str) -> None:
    port, received = listener
    url = f"http://127.0.0.1:{port}/domain.dtd"
    if kind == "dtd":
        document = f'<!DOCTYPE domain SYSTEM "{url}"><domain><vcpu>2</vcpu></domain>'.encode()
    else:
        document = external_entity(url)

    # With no_network=True, libxml2 raises instead of fetching whenever
    # resolve_entities or load_dtd lets it try. lxml 6.2's own libxml2 has
    # no HTTP client, so no_network alone changes nothing a test can see.
    etree.fromstring(document, PARSER)
    with pytest.raises(InvalidInput, match="DOCTYPE"):
        domainxml.parse_domain(document)

    assert received == []


@pytest.fixture
def hook(socket_dir: pathlib.Path) -> Iterator[LauncherClient]:
    with serve_in_process(socket_dir) as socket_path:
        yield LauncherClient(socket_path)


def test_entity_bomb_request_rejected(hook: LauncherClient) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        hook.on_define_domain(billion_laughs(), vmi_bytes(["0-1"]), "v1alpha3")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the domain XML" in raised.value.details()
    assert "lollollol" not in raised.value.details()


def test_external_entity_request_rejected(hook: LauncherClient, secret_file: pathlib.Path) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        hook.on_define_domain(external_entity(secret_file.as_uri()), vmi_bytes(["0-1"]), "v1alpha3")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DOCTYPE" in raised.value.details()
    assert SECRET not in raised.value.details()
