"""Where a plain function's log lines go: the Prefect run's log when it runs inside a flow or task run (so ops read
them in the UI beside the run), else the module's own standard logger (the CLI outside a flow, tests, scripts)."""

from __future__ import annotations

import logging
import sys


def run_logger(fallback: logging.Logger) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The current Prefect run's logger, or `fallback` outside any run. A process that has not imported Prefect is in
    no run, and is spared importing it (most of a second): `permitwatch evaluate` reads files through the same
    loader as the nightly run but never starts one."""
    if "prefect" not in sys.modules:
        return fallback
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return fallback
