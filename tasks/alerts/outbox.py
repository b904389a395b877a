"""The `outbox://` apprise scheme: a digest written to a local folder instead of being sent (embedded default, demo).

A contact `outbox://email` (or `sms`, `im`) is accepted by apprise once `register()` has run. At delivery the URL
is given the recipient unit, the folder and the delivery stamp as query arguments, and each message becomes one file
`<dir>/<stamp>/<unit>.<channel>.<ext>`, attachments beside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from apprise.decorators import notify
from apprise.manager_plugins import NotificationManager

from config.units import CHANNELS, OUTBOX_SCHEME

_EXTENSIONS = {"sms": "txt", "email": "html", "im": "md"}


def outbox_url(channel: str, unit_code: str, directory: Path, stamp: str) -> str:
    """The concrete URL apprise is given for one unit's outbox contact at one delivery."""
    return (
        f"{OUTBOX_SCHEME}://{channel}?unit={quote(unit_code, safe='')}"
        f"&dir={quote(str(directory), safe='')}&stamp={quote(stamp, safe='')}"
    )


def write_outbox_message(
    directory: Path, stamp: str, unit_code: str, channel: str, title: str, body: str, attachments: list[Path]
) -> Path:
    folder = directory / stamp
    folder.mkdir(parents=True, exist_ok=True)
    extension = _EXTENSIONS.get(channel, "txt")
    path = folder / f"{unit_code}.{channel}.{extension}"
    text = body if channel == "email" else f"{title}\n{body}\n" if title else f"{body}\n"
    path.write_text(text, encoding="utf-8")
    for attachment in attachments:
        shutil.copyfile(attachment, folder / f"{unit_code}.{channel}.{attachment.name}")
    return path


def register() -> None:
    """Make `outbox://` known to apprise in this process (a second call does nothing)."""
    if OUTBOX_SCHEME not in NotificationManager():
        notify(on=OUTBOX_SCHEME, name="permitwatch outbox folder")(_send_to_outbox)


def _send_to_outbox(body: str, title: str, notify_type: str, meta: dict[str, Any], *args: Any, **kwargs: Any) -> bool:
    arguments = meta.get("qsd", {})
    channel = meta.get("host", "")
    if channel not in CHANNELS or not arguments.get("dir") or not arguments.get("unit"):
        # A bare `outbox://email` from units.yaml is only valid once delivery fills in unit, folder and stamp.
        return False
    attach = kwargs.get("attach") or []
    paths = [Path(item.path) for item in attach if item.path]
    write_outbox_message(
        Path(arguments["dir"]), arguments.get("stamp", "undated"), arguments["unit"], channel, title, body, paths
    )
    return True
