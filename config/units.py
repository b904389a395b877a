"""Responsible units (责任单位), their parent chain (supervisors) and alert contacts, plus the alerting policy.

`config/units.yaml` holds two sections:
- `units`: code, name, region, parent, tags (ops, supervisor, …), contacts
  (apprise URLs with ${ENV}, tagged sms|email|im) and aliases (the platforms' codes for the unit, config/aliases.py).
- `alerting` (optional, defaults below): which levels make cards, routing, inhibition,
  delivery window, retries, SMS size, and the optional 督办 review.
Everything is checked at load; an error names the file and the unit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import time
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Literal

import apprise
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.aliases import alias_table
from config.loader import ConfigError, expand_env, load_model, read_yaml

UNITS_FILE = "units.yaml"
CHANNELS = ("sms", "email", "im")
# Contacts `outbox://sms|email|im` write digests to a local folder (tasks/alerts/outbox.py delivers them).
OUTBOX_SCHEME = "outbox"
CARD_LEVELS = ("warning", "overdue", "escalated")

ChannelTag = Literal["sms", "email", "im"]
CardLevel = Literal["warning", "overdue", "escalated"]

logger = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactEntry(_Strict):
    url: str = Field(min_length=1)
    tag: ChannelTag


class UnitEntry(_Strict):
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1)
    region: str | None = None
    parent: str | None = None
    tags: tuple[str, ...] = ()
    contacts: tuple[ContactEntry, ...] = ()
    # Other codes a platform uses for this unit: GUIDs (ouguid), 统一社会信用代码, organisation codes, names.
    aliases: tuple[str, ...] = ()


class Route(_Strict):
    """Who receives a card of one level: the owner unit and/or the first `supervisors` units up its parent chain."""

    owner: bool = True
    supervisors: int = Field(default=0, ge=0)


class DeliveryWindow(_Strict):
    """When digests may be sent (Asia/Shanghai). `workdays: official` uses the official working-day calendar."""

    start: time = time(8, 30)
    end: time = time(18, 0)
    workdays: Literal["official", "every_day"] = "official"

    @model_validator(mode="after")
    def _start_before_end(self) -> DeliveryWindow:
        if self.start >= self.end:
            raise ValueError(f"window start {self.start} is not before end {self.end}")
        return self


class SmsLimits(_Strict):
    """One SMS segment holds 70 UCS-2 characters; a multi-part message 67 per segment."""

    single_segment_chars: int = Field(default=70, ge=10)
    multipart_segment_chars: int = Field(default=67, ge=10)
    max_segments: int = Field(default=3, ge=1)
    top_ids: int = Field(default=3, ge=0)


class Inhibition(_Strict):
    """A card of level `source` for a clock suppresses cards of level `target` for the same clock (planned together)."""

    source: CardLevel
    target: CardLevel


class ReviewPolicy(_Strict):
    """督办 review: new escalated cards bound for a supervisor wait (`awaiting_review`) until ops approve or hold them,
    in the `review` flow's form in the Prefect UI or with `permitwatch review`. The owner unit's cards never wait.

    `on_timeout` has no default: what happens when nobody answers the form in time must be a decision, not an
    accident. `send` approves everything still waiting; `hold` holds it for the day (it is proposed again with the
    next reminder)."""

    on_timeout: Literal["send", "hold"]
    timeout_minutes: int = Field(default=50, ge=1, le=24 * 60)


class AlertingPolicy(_Strict):
    levels: tuple[CardLevel, ...] = CARD_LEVELS
    urgency: tuple[CardLevel, ...] = ("escalated", "overdue", "warning")
    routes: dict[CardLevel, Route] = Field(
        default_factory=lambda: {
            "warning": Route(),
            "overdue": Route(),
            "escalated": Route(owner=True, supervisors=1),
        }
    )
    inhibit: tuple[Inhibition, ...] = (Inhibition(source="escalated", target="overdue"),)
    window: DeliveryWindow = DeliveryWindow()
    max_attempts: int = Field(default=5, ge=1)
    parallel_sends: int = Field(default=4, ge=1, le=32)
    sms: SmsLimits = SmsLimits()
    review: ReviewPolicy | None = None  # off unless configured

    @model_validator(mode="after")
    def _complete(self) -> AlertingPolicy:
        missing = [level for level in self.levels if level not in self.routes]
        if missing:
            raise ValueError(f"routes missing for levels {missing}")
        if sorted(self.urgency) != sorted(CARD_LEVELS):
            raise ValueError(f"urgency must list each of {list(CARD_LEVELS)} once")
        return self


class UnitsFile(_Strict):
    alerting: AlertingPolicy = AlertingPolicy()
    units: tuple[UnitEntry, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Contact:
    """An apprise target. `url` is expanded and may hold secrets (never log or store it); `target` is as written."""

    target: str
    url: str = field(repr=False)
    channel: ChannelTag

    @property
    def safe_url(self) -> str:
        """The URL with passwords and tokens masked, for logs and error messages."""
        instance = apprise.Apprise.instantiate(self.url, suppress_exceptions=True)
        return instance.url(privacy=True) if instance is not None else self.target


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    region: str | None
    parent: str | None
    tags: frozenset[str]
    contacts: tuple[Contact, ...]

    def contacts_for(self, channel: str) -> tuple[Contact, ...]:
        return tuple(contact for contact in self.contacts if contact.channel == channel)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(channel for channel in CHANNELS if self.contacts_for(channel))


@dataclass(frozen=True)
class UnitDirectory:
    path: Path
    units: dict[str, Unit]
    alerting: AlertingPolicy
    aliases: dict[str, str] = field(default_factory=dict)  # alias key (config.aliases.alias_key) → unit code

    def __contains__(self, code: object) -> bool:
        return code in self.units

    def __getitem__(self, code: str) -> Unit:
        return self.units[code]

    def __len__(self) -> int:
        return len(self.units)

    def supervisor_chain(self, code: str) -> list[str]:
        """The unit's parent, its parent's parent, … up to the top (督办 goes up this chain)."""
        chain: list[str] = []
        parent = self.units[code].parent
        while parent is not None:
            chain.append(parent)
            parent = self.units[parent].parent
        return chain

    def delivery_unit(self, code: str) -> str:
        """The unit that receives `code`'s messages: itself, or the nearest ancestor with contacts."""
        for candidate in (code, *self.supervisor_chain(code)):
            if self.units[candidate].contacts:
                return candidate
        raise ConfigError(f"{self.path}: entry '{code}': neither the unit nor any parent has contacts")

    def ops_units(self) -> list[str]:
        return [code for code, unit in self.units.items() if "ops" in unit.tags]

    def routing_frame(self) -> pl.DataFrame:
        """One row per (unit, level, recipient): who gets a card of that level owned by that unit, after routing.

        Recipients are the owner and/or the configured number of supervisors up the parent chain; a recipient
        without contacts is replaced by its nearest ancestor with contacts. Built once per run so that card
        routing is a join, not a per-card lookup.
        """
        units: list[str] = []
        levels: list[str] = []
        recipients: list[str] = []
        roles: list[str] = []
        for code in self.units:
            chain = self.supervisor_chain(code)
            for level in self.alerting.levels:
                route = self.alerting.routes[level]
                chosen: list[tuple[str, str]] = []
                if route.owner:
                    chosen.append((self.delivery_unit(code), "owner"))
                chosen.extend((self.delivery_unit(sup), "supervisor") for sup in chain[: route.supervisors])
                seen: set[str] = set()
                for recipient, role in chosen:
                    if recipient in seen:
                        continue
                    seen.add(recipient)
                    units.append(code)
                    levels.append(level)
                    recipients.append(recipient)
                    roles.append(role)
        return pl.DataFrame(
            {"unit_code": units, "level": levels, "recipient_unit": recipients, "role": roles},
            schema={"unit_code": pl.String, "level": pl.String, "recipient_unit": pl.String, "role": pl.String},
        )

    def targets_frame(self) -> pl.DataFrame:
        """One row per (unit, channel, target) for every unit with contacts; `target` is the URL as written."""
        rows = [
            (code, contact.channel, contact.target) for code, unit in self.units.items() for contact in unit.contacts
        ]
        return pl.DataFrame(
            rows, schema={"recipient_unit": pl.String, "channel": pl.String, "target": pl.String}, orient="row"
        )

    def contact(self, unit_code: str, channel: str, target: str) -> Contact | None:
        unit = self.units.get(unit_code)
        if unit is None:
            return None
        return next((c for c in unit.contacts if c.channel == channel and c.target == target), None)


def load_units(config_dir: Path) -> UnitDirectory:
    path = config_dir / UNITS_FILE
    raw = read_yaml(path)
    parsed = load_model(path, UnitsFile, data=raw)
    problems: list[str] = []
    units: dict[str, Unit] = {}
    for entry in parsed.units:
        where = f"{path}: entry '{entry.code}'"
        if entry.code in units:
            problems.append(f"{where}: duplicate unit code")
            continue
        contacts: list[Contact] = []
        for index, contact in enumerate(entry.contacts):
            contact_where = f"{where}: contact {index + 1} ({contact.tag})"
            try:
                url = expand_env(contact.url, where=contact_where)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            problem = _check_url(url, contact.tag)
            if problem:
                problems.append(f"{contact_where}: {problem}: {contact.url}")
                continue
            contacts.append(Contact(target=contact.url, url=url, channel=contact.tag))
        units[entry.code] = Unit(
            code=entry.code,
            name=entry.name,
            region=entry.region,
            parent=entry.parent,
            tags=frozenset(entry.tags),
            contacts=tuple(contacts),
        )
    problems.extend(_check_parents(path, units))
    aliases, alias_problems = alias_table(
        ((entry.code, entry.aliases) for entry in parsed.units), what="unit", where=str(path)
    )
    problems.extend(alias_problems)
    if problems:
        raise ConfigError("\n".join(problems))
    directory = UnitDirectory(path=path, units=units, alerting=parsed.alerting, aliases=aliases)
    problems.extend(_check_reachable(directory))
    if not directory.ops_units():
        problems.append(f"{path}: no unit is tagged 'ops' (run and delivery failures must go somewhere)")
    if problems:
        raise ConfigError("\n".join(problems))
    for code, unit in units.items():
        if not unit.contacts:
            logger.warning(
                "%s: unit %s has no contacts; its alerts go to %s", path, code, directory.delivery_unit(code)
            )
    return directory


def _check_url(url: str, channel: str) -> str | None:
    """Checked without the outbox plugin registered: loading the configuration must not depend on what was imported
    or set up before."""
    schema, _, rest = url.partition("://")
    if schema.lower() == OUTBOX_SCHEME:
        host = rest.split("?", 1)[0].strip("/")
        if host != channel:
            return f"an outbox contact must be outbox://{channel} for tag {channel}"
        return None
    if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
        return "not a valid apprise URL"
    return None


def _check_parents(path: Path, units: dict[str, Unit]) -> list[str]:
    problems = []
    for code, unit in units.items():
        if unit.parent is not None and unit.parent not in units:
            problems.append(f"{path}: entry '{code}': parent '{unit.parent}' is not a unit in this file")
    if problems:
        return problems
    graph = {code: {unit.parent} if unit.parent is not None else set() for code, unit in units.items()}
    order = list(units)
    while True:
        try:
            TopologicalSorter(graph).prepare()
        except CycleError as exc:
            # graphlib lists the cycle parent first; reversed, each unit is followed by its parent. It starts at the
            # member listed first in the file, and each cycle is reported once: its units leave the graph.
            members = list(reversed(exc.args[1]))[:-1]
            first = min(members, key=order.index)
            start = members.index(first)
            cycle = [*members[start:], *members[:start], first]
            problems.append(f"{path}: entry '{first}': parent cycle {' -> '.join(cycle)}")
            graph = {code: parents - set(members) for code, parents in graph.items() if code not in members}
        else:
            return problems


def _check_reachable(directory: UnitDirectory) -> list[str]:
    problems = []
    for code in directory.units:
        try:
            directory.delivery_unit(code)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems
