"""STARTTLS and implicit TLS with a login, against a real TLS-only SMTP server on loopback."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tracker import notify, outbox, subscribers
from tracker.config import Settings
from tracker.mail import SmtpTransport, drain
from tracker.store import Store
from tracker.subscribers import Preferences
from tracker.times import utcnow

pytestmark = pytest.mark.slow  # a real SMTP server on loopback, and openssl for its certificate

USER, PASSWORD = "tracker", "correct horse battery staple"


@dataclass
class Recorder:
    received: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((session.ssl is not None, session.authenticated, envelope))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER \
            and auth_data.password.decode() == PASSWORD
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class EphemeralController(Controller):
    def _trigger_server(self) -> None:
        server: Any = self.server
        if self.port == 0 and server is not None:  # learn the port the system picked
            self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Recorder, int]]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = Recorder()
    controller = EphemeralController(recorder, hostname="127.0.0.1", port=0, tls_context=context,
                            require_starttls=True, authenticator=recorder.authenticate,
                            auth_required=True, auth_require_tls=True)
    controller.start()
    try:
        yield recorder, controller.port
    finally:
        controller.stop()


def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def opened() -> Iterator[list[Store]]:
    """Closes every store a test opened."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        store.close()


def queue_one(settings: Settings, opened: list[Store]) -> Store:
    store = Store.open(settings.database_url, create=True)
    opened.append(store)
    subscriber, _ = subscribers.subscribe(store.db, "ana@example.org", Preferences(),
                                          confirmed=False, now=utcnow())
    notify.queue_confirmation(settings, store, subscriber, utcnow())
    return store


def test_starttls_with_login_delivers_over_an_encrypted_authenticated_session(
        tmp_path: Path, tls_server: tuple[Recorder, int], certificate: tuple[Path, Path],
        opened: list[Store]) -> None:
    recorder, port = tls_server
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", secret_key="k" * 32,
                        smtp_host="127.0.0.1", smtp_port=port, smtp_security="starttls",
                        smtp_user=USER, smtp_password=PASSWORD)
    store = queue_one(settings, opened)

    result = drain(store.db, SmtpTransport(settings, tls_context=client_context(certificate)))

    assert result.sent == 1
    [(encrypted, authenticated, envelope)] = recorder.received
    assert encrypted and authenticated
    assert envelope.rcpt_tos == ["ana@example.org"]
    assert recorder.logins == [USER]
    assert PASSWORD not in repr(settings)  # secrets stay out of anything printed


def test_an_untrusted_certificate_is_refused(tmp_path: Path, tls_server: tuple[Recorder, int],
                                             opened: list[Store]) -> None:
    recorder, port = tls_server
    settings = Settings(database_url=f"sqlite:///{tmp_path / 't.db'}", secret_key="k" * 32,
                        smtp_host="127.0.0.1", smtp_port=port, smtp_security="starttls",
                        smtp_user=USER, smtp_password=PASSWORD)
    store = queue_one(settings, opened)

    result = drain(store.db, SmtpTransport(settings))  # system trust store: self-signed is refused

    assert (result.sent, result.left) == (0, 1)
    [error] = result.errors
    assert error.startswith(f"Cannot reach the mail server 127.0.0.1:{port}: ")
    assert "certificate verify failed" in error
    assert [(m.status, m.attempts, m.error) for m in outbox.messages(store.db)] == [
        ("queued", 1, error)]
    assert recorder.received == []
