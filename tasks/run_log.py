"""Where a plain function's log lines go: the Prefect run's log when it runs inside a flow or task run (so ops read
them in the UI beside the run), else the module's own standard logger (the CLI outside a flow, tests, scripts)."""

from __future__ import annotations

import logging

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def run_logger(fallback: logging.Logger) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The current Prefect run's logger, or `fallback` outside any run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return fallback
