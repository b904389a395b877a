"""Sending: one message to one contact through apprise, once, within its channel's timeouts.

A message is a `Digest` (cards, with an idempotency key derived from the card deliveries it carries, so a repeat
after a crash or a timeout is recognisably the same message) or a `Notice` (no cards: a notice to ops, the periodic
report to a supervisor; never repeated on its own, so it has no key). `SendOptions` are the PERMITWATCH_* settings
that shape a send; `display_target` is how a contact URL may appear in logs and tables (no credentials, phones
masked). What is sent when, and what its result means for the cards, is `tasks.alerts.delivery`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import apprise
from apprise.plugins.email import NotifyEmail

from config.settings import Settings
from config.units import CHANNELS, Contact, UnitDirectory
from tasks.alerts.digests import Digest
from tasks.alerts.idempotency import add_gateway_key, digest_key, message_id
from tasks.alerts.outbox import OUTBOX_SCHEME, outbox_url
from tasks.pii import mask_phone

# apprise's own fields of a json:// or form:// body (`:message=content` renames one); any other `:name=value` of a
# contact URL is a field of its own, usually the recipient's number.
_APPRISE_FIELDS = frozenset({"message", "title", "version", "type", "attachments"})
_TIMED_OUT = "timed out"
_BODY_FORMATS = {
    "email": apprise.NotifyFormat.HTML,
    "sms": apprise.NotifyFormat.TEXT,
    "im": apprise.NotifyFormat.MARKDOWN,
}

# A send that got no answer in time may still have reached the recipient: it is kept pending, saying so.
TIMEOUT_ERROR = "timeout: may have been delivered"


@dataclass(frozen=True)
class SendOptions:
    """How messages go out (from the PERMITWATCH_* settings): per-channel timeouts, the idempotency key's header or
    field for HTTP SMS gateways, the claim lease and the Prefect flow run the delivery belongs to."""

    timeouts: dict[str, float]
    connect_timeout: float
    sms_idempotency_header: str
    sms_idempotency_field: str
    lease_seconds: float
    flow_run_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, flow_run_id: str | None = None) -> SendOptions:
        return cls(
            timeouts={channel: settings.send_timeout(channel) for channel in CHANNELS},
            connect_timeout=settings.connect_timeout,
            sms_idempotency_header=settings.sms_idempotency_header,
            sms_idempotency_field=settings.sms_idempotency_field,
            lease_seconds=settings.delivery_lease_seconds,
            flow_run_id=flow_run_id,
        )


@dataclass(frozen=True)
class Notice:
    """A message that carries no cards (a notice to ops, the periodic report mail): its body already in the form of
    the contact's channel. `recipient_unit` names the file an `outbox://` contact writes."""

    recipient_unit: str
    title: str
    body: str
    attachments: dict[str, bytes] = field(default_factory=dict)


def send_message(
    contact: Contact, message: Digest | Notice, *, outbox_dir: Path, stamp: str, options: SendOptions | None = None
) -> tuple[bool, str | None]:
    """Send one message to one target through apprise, once: apprise's own retries are off, since a repeat of a
    message that may have arrived is the next delivery's decision. With `options`, the channel's timeouts apply and
    a digest's idempotency key goes with it (Message-ID, SMS gateway header or field). Returns (ok, error), the
    error from apprise's log of the call; a send that timed out waiting for an answer is TIMEOUT_ERROR."""
    url = contact.url
    if contact.target.split("://", 1)[0].lower() == OUTBOX_SCHEME:
        url = outbox_url(contact.channel, message.recipient_unit, outbox_dir, stamp)
    service = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if service is None:
        return False, f"apprise cannot load {contact.safe_url}"
    # Only a digest of card deliveries has an identity to repeat; a notice is always new.
    key = digest_key(message) if isinstance(message, Digest) and message.delivery_ids else None
    service.retry = 0
    timeout = None
    if options is not None:
        timeout = _apply_timeouts(service, contact.channel, options)
        if key and contact.channel == "sms":
            add_gateway_key(service, key, options.sms_idempotency_header, options.sms_idempotency_field)
    notifier = apprise.Apprise()
    notifier.add(service)
    body_format = _BODY_FORMATS.get(contact.channel, apprise.NotifyFormat.TEXT)
    with contextlib.ExitStack() as stack:
        if key:
            stack.enter_context(message_id(key))
        attach = None
        if message.attachments:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="permitwatch-")))
            attach = apprise.AppriseAttachment()
            for name, content in message.attachments.items():
                (folder / name).write_bytes(content)
                attach.add(str(folder / name))
        started = time.monotonic()
        result = notifier.notify(body=message.body, title=message.title, body_format=body_format, attach=attach)
        elapsed = time.monotonic() - started
    if result:
        return True, None
    # The service's own log of this call (per call, so parallel sends do not mix their errors). apprise logs why a
    # request failed only at DEBUG, which it captures per call only by lowering its logger's level for every
    # thread; a failed call that lasted the whole timeout is the timeout instead.
    entries = [entry for outcome in result for entry in outcome.logs()]
    if (timeout is not None and elapsed >= timeout) or any(_TIMED_OUT in entry.message.lower() for entry in entries):
        return False, TIMEOUT_ERROR
    problems = [entry.message for entry in entries if entry.level in {"WARNING", "ERROR"}]
    return False, ("; ".join(problems[-3:]) or "apprise reported failure")[:1000]


def _apply_timeouts(service: Any, channel: str, options: SendOptions) -> float:
    """Set the channel's timeouts on the service; returns how long an answer may take."""
    timeout = options.timeouts.get(channel, max(options.timeouts.values()))
    if isinstance(service, NotifyEmail):
        # smtplib has one timeout, for connecting and for every answer of the server.
        service.socket_connect_timeout = timeout
        return timeout
    service.socket_connect_timeout = min(options.connect_timeout, timeout)
    service.socket_read_timeout = timeout
    return timeout


def send_digest(
    digest: Digest, units: UnitDirectory, outbox_dir: Path, stamp: str, options: SendOptions
) -> tuple[bool, str | None]:
    """`send_message` to the digest's contact in units.yaml; whatever goes wrong becomes (False, the error)."""
    contact = units.contact(digest.recipient_unit, digest.channel, digest.target)
    if contact is None:  # unknown targets were failed before digests were built
        return False, "target no longer configured in units.yaml"
    try:
        return send_message(contact, digest, outbox_dir=outbox_dir, stamp=stamp, options=options)
    except Exception as exc:  # a plugin error must become a recorded failure, not rows left `sending`
        return False, f"{type(exc).__name__}: {exc}"[:1000]


def display_target(target: str, limit: int = 60) -> str:
    """A contact URL as written in units.yaml, short enough for a log line or a table cell: scheme, host and the
    recipient, without credentials, and with phone numbers masked (139****1234)."""
    parts = urlsplit(target)
    host = parts.netloc.rsplit("@", 1)[-1]
    recipients = [
        value
        for key, value in parse_qsl(parts.query)
        if key == "to" or (key.startswith(":") and key[1:] not in _APPRISE_FIELDS and value)
    ]
    shown = [mask_phone(value) if _looks_like_phone(value) else value for value in recipients]
    text = f"{parts.scheme}://{host}" + (f" to {','.join(shown)}" if shown else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _looks_like_phone(value: str) -> bool:
    digits = sum(character.isdigit() for character in value)
    return digits >= 7 and digits >= len(value.replace("-", "").replace("+", "").replace(" ", "")) - 1
