"""Apprise made ready for one process: the `outbox://` scheme registered and the URLs apprise logs hidden.

Importing a module changes nothing: each entry point (the `permitwatch` command once it loads the configuration, every
flow and its failure hooks, the test suite) calls `setup_apprise()` before URLs are loaded or messages sent. Calling
it again does nothing.
"""

from __future__ import annotations

import logging

from tasks.alerts import outbox


class _HideLoadedUrls(logging.Filter):
    """apprise logs every URL it loads at DEBUG, secrets from ${ENV} included (tokens in `+Header=` arguments).

    A filter on apprise's own logger drops those records in every thread. Lowering the level around each load instead
    races with deliveries sent in parallel: one thread restores the level while another is loading a URL.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.DEBUG and str(record.msg).startswith("Loaded "))


def hide_apprise_urls() -> None:
    apprise_logger = logging.getLogger("apprise")
    if not any(isinstance(existing, _HideLoadedUrls) for existing in apprise_logger.filters):
        apprise_logger.addFilter(_HideLoadedUrls())


def setup_apprise() -> None:
    hide_apprise_urls()
    outbox.register()
