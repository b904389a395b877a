"""The version of the code behind a cached result: a digest of the source of the modules that compute it.

The settled evaluations (tasks/store/settled.py) and the memo of per-row checking (tasks/ingest/memo.py) are both
results kept from earlier runs; each is reused only while the code that made it is byte for byte the same, so that
a fix in the engine or the parser takes effect on the next night without anyone clearing anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def add_module_sources(digest: Digest, modules: Sequence[str]) -> None:
    """Feed each module's source file, in the order given, into `digest` (a hashlib object)."""
    for name in modules:
        digest.update(Path(importlib.import_module(name).__file__ or "").read_bytes())
