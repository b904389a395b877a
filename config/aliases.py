"""Aliases (别名): the other names a platform uses for a unit or a matter, resolved to the code permitwatch uses.

A unit in `units.yaml` or a matter in `rules.yaml` may list `aliases`: another organisation code, a GUID
(Epoint's `ouguid`), a 统一社会信用代码, the 31–33 character 实施编码 of a matter, a name. Lookups ignore case and
surrounding spaces. A value used by two entries, as a code or an alias, is a config error at load naming both.
"""

from __future__ import annotations

from collections.abc import Iterable


def alias_key(value: str) -> str:
    """The form lookups compare: trimmed and lower-cased (GUIDs come in either case), as polars'
    `str.strip_chars().str.to_lowercase()` does at ingestion."""
    return value.strip().lower()


def alias_table(
    entries: Iterable[tuple[str, Iterable[str]]], *, what: str, where: str
) -> tuple[dict[str, str], list[str]]:
    """(alias key → code, problems) for `entries` of (code, aliases). Every code resolves to itself; an alias that
    names the entry's own code is allowed; a value claimed by two different codes is a problem naming both."""
    table: dict[str, str] = {}
    problems: list[str] = []
    pairs = list(entries)
    for code, _ in pairs:
        table.setdefault(alias_key(code), code)
    for code, aliases in pairs:
        for alias in aliases:
            key = alias_key(alias)
            if not key:
                problems.append(f"{where}: {what} '{code}' has a blank alias")
                continue
            owner = table.setdefault(key, code)
            if owner != code:
                problems.append(
                    f"{where}: alias '{alias}' of {what} '{code}' is already the code or an alias of {what} '{owner}'"
                )
    return table, problems
