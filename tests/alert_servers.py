"""Real servers on loopback for the alert tests: an SMTP server (aiosmtpd) and an HTTP SMS gateway.

The gateway records every request (path, headers, parsed body) and can be told to answer 500 (`fail()`), to answer
only after `delay` seconds, or to refuse connections altogether (`down()`, the listening socket is closed); `up()`
brings it back on the same port. The SMTP server can hold each message `hold` seconds before it answers (a slow
relay): the message counts as received as soon as its data arrived, as with a real relay.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""

    def attachments(self) -> dict[str, bytes]:
        return {
            part.get_filename() or "": part.get_payload(decode=True) or b"" for part in self.message.iter_attachments()
        }


class _MailHandler:
    def __init__(self, box: SmtpServer) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.box.lock:
            self.box.messages.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        if self.box.hold:
            await asyncio.sleep(self.box.hold)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int = 0
    hold: float = 0.0
    messages: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None

    def start(self) -> None:
        self.port = free_port()
        self.controller = Controller(_MailHandler(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()

    def mailto(self, to: str, sender: str = "permitwatch@example.gov.cn") -> str:
        return f"mailto://127.0.0.1:{self.port}?from={sender}&to={to}"

    def to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [mail for mail in self.messages if address in mail.recipients]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


@dataclass
class GatewayRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class SmsGateway:
    """A small HTTP SMS gateway: POST anything, get 200 (or 500 when told to fail)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[GatewayRequest] = []
        self.status = 200
        self.delay = 0.0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def up(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                kind = self.headers.get("Content-Type", "")
                body = json.loads(raw) if "json" in kind else dict(parse_qsl(raw))
                with gateway.lock:
                    gateway.requests.append(GatewayRequest(self.path, dict(self.headers.items()), body))
                    status = gateway.status
                    delay = gateway.delay
                if delay:
                    time.sleep(delay)
                payload = json.dumps({"code": 0 if status == 200 else 1}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return  # a late answer: the client stopped waiting (its timeout), the request is recorded

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads `requests`."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.status = 200

    def down(self) -> None:
        """Stop listening: connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail(self, status: int = 500) -> None:
        self.status = status

    def json_url(self, mobile: str, token_variable: str = "SMS_GATEWAY_TOKEN") -> str:
        return (
            f"json://127.0.0.1:{self.port}/api/sms/send?+Authorization=Bearer%20${{{token_variable}}}"
            f"&:mobile={mobile}&:message=content&:title=&:version=&:type=&:attachments="
        )

    def form_url(self, mobile: str, token_variable: str = "SMS_GATEWAY_TOKEN") -> str:
        return (
            f"form://127.0.0.1:{self.port}/api/sms/form?+X-Api-Key=${{{token_variable}}}"
            f"&:phone={mobile}&:message=text&:title=&:version=&:type="
        )

    def to(self, mobile: str) -> list[GatewayRequest]:
        with self.lock:
            return [
                request
                for request in self.requests
                if request.body.get("mobile") == mobile or request.body.get("phone") == mobile
            ]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


@contextmanager
def running_smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_sms_gateway() -> Iterator[SmsGateway]:
    gateway = SmsGateway()
    gateway.up()
    try:
        yield gateway
    finally:
        gateway.down()
