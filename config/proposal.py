"""A proposed change of the deadline rules (拟调整时限) for the what-if: read, checked, merged into the rules in force.

A proposal is written in the format of config/rules.yaml and holds only the entries that change, e.g. one new version
of a project category:

    project_categories:
      - {code: rongjiang_engineering, name: 蓉江新区工程建设项目审批, limit: 60, effective_from: 2027-01-01}

Every entry is checked by the same models as rules.yaml, so an error names the file, the entry and the field. An entry
must name a matter, project category or suspension kind that the rules in force know: a misspelt code would
otherwise add a rule that no clock uses and the what-if would quietly show no effect.

Two rule books come out of a proposal:
- `merged_rules`: the versioning rule as the nightly run applies it. A proposed version replaces the version of the
  same entry with the same effective_from, or is added beside the others; a clock keeps the version in force on its
  start date. Suspension kinds and defaults have no versions: a proposed one applies to every clock.
- `retrospective_rules`: as if the proposal had always applied. For each entry that the proposal changes, its
  earliest changed version takes effect from the beginning of time and replaces the versions in force before it.
  A proposal identical to the rules in force changes nothing in either book.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import PrivateAttr, ValidationError

from config.loader import ConfigError, describe_validation_error, load_model, read_yaml
from config.rules import Defaults, LimitRule, RuleBook

# Before any clock's start date: a retrospective version is in force for every clock.
BEGINNING = date(1900, 1, 1)
TEXT_LABEL = Path("<proposed rules>")
VERSIONED_SECTIONS = ("matters", "project_categories")
LIMIT_SECTIONS = ("deferral", "claim")


class ProposedRules(RuleBook):
    """rules.yaml's format and checks, with every section optional: only the entries that change."""

    defaults: Defaults | None = None  # type: ignore[assignment]
    deferral: tuple[LimitRule, ...] = ()
    claim: tuple[LimitRule, ...] = ()
    _source: Path = PrivateAttr(default=TEXT_LABEL)  # the file (or text) it came from, named in errors

    @property
    def source(self) -> Path:
        return self._source

    def is_empty(self) -> bool:
        return self.defaults is None and not any(
            getattr(self, section) for section in (*LIMIT_SECTIONS, *VERSIONED_SECTIONS, "suspension_kinds")
        )


def load_proposal(source: str | Path, in_force: RuleBook) -> ProposedRules:
    """The proposal in a file, or (a string that is not a file) in YAML text; checked against the rules in force."""
    path = Path(source) if isinstance(source, Path) or _looks_like_path(source) else None
    if path is not None:
        raw = read_yaml(path)
    else:
        path = TEXT_LABEL
        try:
            raw = _yaml_text(str(source))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of rule sections like rules.yaml, got {type(raw).__name__}")
    proposal = load_model(path, ProposedRules, data=raw)
    proposal._source = path
    if proposal.is_empty():
        raise ConfigError(f"{path}: holds no rule to change (sections: defaults, deferral, claim, "
                          "suspension_kinds, project_categories, matters)")
    _check_known(path, proposal, in_force)
    return proposal


def _looks_like_path(text: str) -> bool:
    """A path is one line without YAML's "key: value" or flow mapping; anything else is read as YAML text."""
    return "\n" not in text and ": " not in text and not text.lstrip().startswith("{")


def _yaml_text(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}") from None


def _check_known(path: Path, proposal: ProposedRules, in_force: RuleBook) -> None:
    problems = []
    sections: dict[str, tuple[tuple[Any, ...], set[str], str]] = {
        "matters": (proposal.matters, {m.code for m in in_force.matters}, "code"),
        "project_categories": (proposal.project_categories, {c.code for c in in_force.project_categories}, "code"),
        "suspension_kinds": (proposal.suspension_kinds, {k.kind for k in in_force.suspension_kinds}, "kind"),
    }
    for section, (entries, known, field) in sections.items():
        for index, entry in enumerate(entries):
            name = getattr(entry, field)
            if name not in known:
                problems.append(
                    f"{path}: entry '{name}': field '{section}.{index}.{field}': not among the rules in force "
                    f"(known: {', '.join(sorted(known))})"
                )
    if problems:
        raise ConfigError("\n".join(problems))


def merged_rules(in_force: RuleBook, proposal: ProposedRules) -> RuleBook:
    """The rules in force with the proposal's versions put in (same entry and effective_from replaced)."""
    defaults = in_force.defaults
    if proposal.defaults is not None:
        given = proposal.defaults.model_dump(include=proposal.defaults.model_fields_set)
        defaults = defaults.model_copy(update=given)
    kinds = {kind.kind: kind for kind in in_force.suspension_kinds}
    kinds.update({kind.kind: kind for kind in proposal.suspension_kinds})
    sections: dict[str, Any] = {"defaults": defaults, "suspension_kinds": tuple(kinds.values())}
    for section in (*LIMIT_SECTIONS, *VERSIONED_SECTIONS):
        versions = {_version_key(entry): entry for entry in getattr(in_force, section)}
        versions.update({_version_key(entry): entry for entry in getattr(proposal, section)})
        sections[section] = tuple(versions.values())
    return _rule_book(sections, proposal.source)


def retrospective_rules(in_force: RuleBook, proposal: ProposedRules) -> RuleBook:
    """The merged rules with each changed entry's earliest changed version in force from the beginning."""
    merged = merged_rules(in_force, proposal)
    sections: dict[str, Any] = {}
    for section in (*LIMIT_SECTIONS, *VERSIONED_SECTIONS):
        current = set(getattr(in_force, section))
        first_change: dict[str, date] = {}
        for entry in getattr(proposal, section):
            if entry not in current:
                code, effective = _version_key(entry)
                first_change[code] = min(effective, first_change.get(code, effective))
        kept = []
        for entry in getattr(merged, section):
            code, effective = _version_key(entry)
            if code not in first_change or effective > first_change[code]:
                kept.append(entry)
            elif effective == first_change[code]:
                kept.append(entry.model_copy(update={"effective_from": BEGINNING}))
        sections[section] = tuple(kept)
    return _rule_book({**merged.model_dump(exclude=set(sections)), **sections}, proposal.source)


def changed_versions(in_force: RuleBook, proposal: ProposedRules) -> list[str]:
    """The proposal's versions that differ from the rules in force, one line each (for summaries)."""
    lines = []
    limits = {_version_key(entry): entry.limit for section in (*LIMIT_SECTIONS, *VERSIONED_SECTIONS)
              for entry in getattr(in_force, section)}
    for section in (*LIMIT_SECTIONS, *VERSIONED_SECTIONS):
        current = set(getattr(in_force, section))
        for entry in getattr(proposal, section):
            if entry in current:
                continue
            code, effective = _version_key(entry)
            before = limits.get((code, effective))
            if before is None:
                older = sorted((e, limit) for (c, e), limit in limits.items() if c == code and e <= effective)
                before = older[-1][1] if older else None
            label = getattr(entry, "name", None) or section
            lines.append(f"{section} {code} ({label}): {before if before is not None else '—'} → {entry.limit} "
                         f"{entry.limit_kind}, effective {effective}")
    in_force_kinds = set(in_force.suspension_kinds)
    lines.extend(f"suspension_kinds {kind.kind}: {kind.effect}, limit {kind.limit}"
                 for kind in proposal.suspension_kinds if kind not in in_force_kinds)
    if proposal.defaults is not None:
        given = proposal.defaults.model_dump(include=proposal.defaults.model_fields_set)
        lines.extend(f"defaults {name}: {getattr(in_force.defaults, name)} → {value}"
                     for name, value in given.items() if getattr(in_force.defaults, name) != value)
    return lines


def _version_key(entry: Any) -> tuple[str, date]:
    """(entry code, effective_from); deferral and claim rules have no code."""
    return getattr(entry, "code", ""), entry.effective_from


def _rule_book(sections: dict[str, Any], label: Path) -> RuleBook:
    try:
        return RuleBook.model_validate(sections)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(label, exc)) from None
