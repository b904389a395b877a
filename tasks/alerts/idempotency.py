"""Idempotency keys (幂等键) for digests, so that a receiver that deduplicates sees a digest sent twice only once.

A digest's key is derived from what it is: its recipient, channel, target and the card deliveries it carries. The
digest rebuilt by the delivery after a crash, from the same pending rows, has the same key. Email carries it as the
Message-ID (`<pw-KEY@smtp-host>`); an HTTP SMS gateway gets it in a header and/or body field (settings).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from tasks.alerts.digests import Digest

_MESSAGE_ID: ContextVar[str | None] = ContextVar("permitwatch_message_id", default=None)


def digest_key(digest: Digest) -> str:
    identity = "|".join(
        [digest.recipient_unit, digest.channel, digest.target, ",".join(map(str, sorted(digest.delivery_ids)))]
    )
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def install_message_id_hook() -> None:
    """Let `message_id` choose the Message-ID of the emails apprise builds.

    apprise gives every email a random Message-ID (`email.utils.make_msgid`) after any custom header, so a header
    set on the URL would only add a second Message-ID. Its email module's `make_msgid` is wrapped instead: inside a
    `message_id(key)` block (per thread and task, a context variable) it returns the digest's id, elsewhere the
    random one. Idempotent.
    """
    from apprise.plugins.email import base

    current = base.make_msgid
    if getattr(current, "permitwatch", False):
        return
    original = current

    def make_msgid(idstring: str | None = None, domain: str | None = None) -> str:
        key = _MESSAGE_ID.get()
        if key is None:
            return original(idstring=idstring, domain=domain)
        return f"<pw-{key}@{domain or 'permitwatch.invalid'}>"

    make_msgid.permitwatch = True  # type: ignore[attr-defined]
    base.make_msgid = make_msgid


@contextmanager
def message_id(key: str) -> Iterator[None]:
    """Emails built inside the block carry the Message-ID derived from `key` (see `install_message_id_hook`)."""
    token = _MESSAGE_ID.set(key)
    try:
        yield
    finally:
        _MESSAGE_ID.reset(token)


def add_gateway_key(service: Any, key: str, header: str, field: str) -> None:
    """Put the key into an HTTP gateway's request (apprise's json:// and form:// keep extra headers in `headers`
    and extra body fields in `payload_extras`). Other services are left as they are."""
    if header and isinstance(getattr(service, "headers", None), dict):
        service.headers[header] = key
    if field and isinstance(getattr(service, "payload_extras", None), dict):
        service.payload_extras[field] = key
