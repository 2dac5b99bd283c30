"""The failure notifier's mail goes only to a server whose certificate verifies.

A real SMTP server on loopback (the smallest one that speaks EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT
and DATA, on socketserver + ssl: no SMTP server library is installed) with a certificate from a
throwaway CA made here with `cryptography`.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import ipaddress
import socketserver
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipelines import notify

REASONS = "infra check failed: NaN for 3 of 50 examples\nproduction moved from version 6 to 8"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pki(folder: Path, server_name: str) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) for a server called ``server_name``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(server_name)]
    if server_name == "localhost":
        san.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (x509.CertificateBuilder().subject_name(_name(server_name)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), SMTPHandler)
        self.context = context
        self.messages: list[dict] = []
        self.handshakes: list[str] = []


class SMTPHandler(socketserver.StreamRequestHandler):
    """RFC 5321 as little as smtplib needs: login and data only after STARTTLS."""

    def _send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        server: SMTPServer = self.server  # type: ignore[assignment]
        tls, user, mail = False, None, {}
        self._send("220 test ESMTP")
        while line := self.rfile.readline():
            cmd = line.decode().rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self._send("250-test" if tls else "250-test\r\n250-STARTTLS")
                self._send("250 AUTH PLAIN")
            elif verb == "STARTTLS":
                self._send("220 ready for TLS")
                try:
                    self.request = server.context.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    server.handshakes.append(f"refused: {exc}")
                    return
                server.handshakes.append("ok")
                self.rfile = self.request.makefile("rb")
                self.wfile = self.request.makefile("wb")
                tls = True
            elif verb == "AUTH" and tls:
                user = base64.b64decode(cmd.split()[2]).split(b"\0")[1].decode()
                self._send("235 ok")
            elif verb == "MAIL" and tls:
                mail = {"user": user, "from": cmd}
                self._send("250 ok")
            elif verb == "RCPT" and tls:
                self._send("250 ok")
            elif verb == "DATA" and tls:
                self._send("354 go on")
                body = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    body.append(data.decode().replace("\r\n", "\n"))
                server.messages.append({**mail, "body": "".join(body)})
                self._send("250 queued")
            elif verb == "QUIT":
                self._send("221 bye")
                return
            else:
                self._send("530 STARTTLS first")


@pytest.fixture
def smtp_server(tmp_path):
    servers = []

    def start(server_name: str = "localhost") -> tuple[SMTPServer, Path]:
        ca, cert, key = _pki(tmp_path, server_name)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        server = SMTPServer(context)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, ca

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _target(server: SMTPServer, **extra) -> dict:
    return {"conn_type": "smtp", "host": "localhost", "port": server.server_address[1],
            "login": "alerts", "password": "s3cret", "extra": {"to": "ops@example.org", **extra}}


def test_an_untrusted_certificate_gets_nothing(smtp_server, caplog):
    server, _ = smtp_server()
    assert notify.notify("retrain_adult.report failed: " + REASONS, _target(server)) is False
    assert server.messages == []  # neither the password nor the message crossed
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_a_trusted_certificate_gets_the_whole_message(smtp_server):
    server, ca = smtp_server()
    assert notify.notify("retrain_adult.report failed: " + REASONS,
                         _target(server, ca_file=str(ca))) is True
    [mail] = server.messages
    assert server.handshakes == ["ok"] and mail["user"] == "alerts"
    parsed = email.message_from_string(mail["body"], policy=email.policy.default)
    assert parsed["Subject"].strip() == ("retrain_adult.report failed: infra check failed: NaN for 3 of "
                                 "50 examples")  # one line
    assert parsed.get_content().strip() == "retrain_adult.report failed: " + REASONS


def test_a_certificate_for_another_host_is_refused(smtp_server, caplog):
    server, ca = smtp_server("mail.example.org")
    assert notify.notify("x", _target(server, ca_file=str(ca))) is False
    assert server.messages == [] and "match" in caplog.text.lower()


def test_no_password_in_clear_text(smtp_server, caplog):
    server, _ = smtp_server()
    assert notify.notify("x", _target(server, tls="none")) is False
    assert server.handshakes == [] and "clear text" in caplog.text
