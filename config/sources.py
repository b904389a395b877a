"""Input sources (`config/sources.yaml`): where each export is and how it maps onto its canonical table.

A source is a named export: its kind (csv|xlsx|parquet|jsonl|sql), where it is (a path glob resolved in the inbox
directory, or a SQLAlchemy URL from the environment plus a query), its target table, a header mapping, value maps,
per-source defaults, an encoding, extra date formats and the largest reject fraction it may have before nothing from
it is stored. A platform's source may also reject unit and matter codes that no alias knows (`unknown_codes`), and a
suspensions source may be written as start and end events (`events`, paired by tasks/ingest/events.py).

The Chinese headers of the canonical tables (declared in config/canonical.py) are accepted for every source by
default, so a raw export of the approval platform loads with no mapping at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.canonical import CANONICAL_COLUMNS, TABLES, canonical_names, default_header_map
from config.loader import ConfigError, expand_env, load_model

SOURCES_FILE = "sources.yaml"

SourceKind = Literal["csv", "xlsx", "parquet", "jsonl", "sql"]
# The canonical tables' names, as declared in config/canonical.py (a Literal so that a wrong name lists the right ones).
TableName = Literal[TABLES]  # type: ignore[valid-type]
Encoding = Literal["auto", "utf-8", "utf-8-sig", "gb18030", "gbk"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventPairing(_Strict):
    """A suspensions source written as events, one row per start or end (Epoint's `audit_project_unusual`, the
    中间库 variant with `specialnodetype`). Starts and ends are paired in time order per case (and per `within`)."""

    column: str = Field(min_length=1)  # the source column holding the event code
    start: tuple[str, ...] = Field(min_length=1)  # codes that start a pause, e.g. 10 暂停计时
    end: tuple[str, ...] = Field(min_length=1)  # codes that end it, e.g. 11 恢复
    # One-row events: code → suspension kind, started and ended on the event's day (e.g. 20 延期 → 延期, whose
    # limit_days is the number of extension days).
    single: dict[str, str] = Field(default_factory=dict)
    within: tuple[str, ...] = ()  # source columns that pairing also groups by, e.g. SN (序号)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _codes_as_text(cls, codes: object) -> object:
        # YAML reads `start: [10]` as a number; event codes are compared as text.
        return [str(code) for code in codes] if isinstance(codes, list | tuple) else codes

    @field_validator("single", mode="before")
    @classmethod
    def _single_codes_as_text(cls, single: object) -> object:
        return {str(code): kind for code, kind in single.items()} if isinstance(single, dict) else single

    @model_validator(mode="after")
    def _codes_distinct(self) -> EventPairing:
        groups = {"start": set(self.start), "end": set(self.end), "single": set(self.single)}
        names = list(groups)
        for index, first in enumerate(names):
            for second in names[index + 1 :]:
                shared = sorted(groups[first] & groups[second])
                if shared:
                    raise ValueError(f"event code(s) {', '.join(shared)} are both {first} and {second}")
        return self


class Source(_Strict):
    name: str = Field(min_length=1, max_length=120)
    kind: SourceKind
    table: TableName
    path: str | None = None  # a glob; relative globs resolve in the inbox directory
    url: str | None = None  # SQLAlchemy URL with ${ENV} references; expanded on use so no secret is held in config
    query: str | None = None
    sheet: str | int | None = None  # xlsx: sheet name or 0-based index (default: the first sheet)
    mapping: dict[str, str] = Field(default_factory=dict)  # source header → canonical column
    values: dict[str, dict[str, str]] = Field(default_factory=dict)  # canonical column → {source value: value}
    encoding: Encoding = "auto"
    separator: str = Field(default=",", min_length=1, max_length=1)
    date_formats: tuple[str, ...] = ()  # extra strptime formats, tried after the built-in ones
    max_reject_fraction: float = Field(default=0.2, ge=0, le=1)
    required: bool = False  # a file source with no matching file fails the run (default: a warning)
    # Largest fall in rows read against the source's last stored load before the export is taken for truncated and
    # refused; null turns the check off (an export that carries only changed rows).
    max_row_drop: float | None = Field(default=0.3, ge=0, le=1)
    defaults: dict[str, str] = Field(default_factory=dict)  # canonical column → value where the source has none
    events: EventPairing | None = None  # suspensions only: rows are start/end events, paired at load
    # keep: a unit or matter code that no entry of units.yaml/rules.yaml knows (as code or alias) is loaded as is;
    # reject: it is a reject with its reason (platform sources, whose codes are GUIDs and 实施编码).
    unknown_codes: Literal["keep", "reject"] = "keep"
    # sql only: the canonical date/datetime column (e.g. updated_at) whose newest stored value the query receives as
    # the bound parameter :watermark, so that the platform sends only what changed since (and max_row_drop is off)
    watermark: str | None = None

    @model_validator(mode="after")
    def _events_fit_table(self) -> Source:
        if self.events is None:
            return self
        if self.table != "suspensions":
            raise ValueError("`events` only applies to suspensions sources")
        if "ended_at" in self.mapping.values():
            raise ValueError("an events source takes ended_at from its end events: map no column to ended_at")
        return self

    @model_validator(mode="before")
    @classmethod
    def _watermark_carries_only_changes(cls, entry: Any) -> Any:
        """A watermark source sends only what changed, so a fall in rows read is no sign of a truncated export."""
        if isinstance(entry, dict) and entry.get("watermark") and "max_row_drop" not in entry:
            return {**entry, "max_row_drop": None}
        return entry

    @model_validator(mode="after")
    def _location_fits_kind(self) -> Source:
        if self.kind == "sql":
            if not self.url or not self.query:
                raise ValueError("a sql source needs `url` (with ${ENV} for secrets) and `query`")
            if self.path:
                raise ValueError("a sql source takes `url` and `query`, not `path`")
            expand_env(self.url, where=f"source '{self.name}' url")
        else:
            if not self.path:
                raise ValueError(f"a {self.kind} source needs `path` (a file glob)")
            if self.url or self.query:
                raise ValueError(f"a {self.kind} source takes `path`, not `url`/`query`")
        if self.sheet is not None and self.kind != "xlsx":
            raise ValueError("`sheet` only applies to xlsx sources")
        if self.watermark is not None:
            self._check_watermark(self.watermark)
        return self

    def _check_watermark(self, column: str) -> None:
        if self.kind != "sql":
            raise ValueError("`watermark` only applies to sql sources")
        kinds = {entry.name: entry.kind for entry in CANONICAL_COLUMNS[self.table]}
        if kinds.get(column) not in ("date", "datetime"):
            usable = ", ".join(name for name, kind in kinds.items() if kind in ("date", "datetime"))
            raise ValueError(f"watermark '{column}' is not a date or datetime column of {self.table} ({usable})")
        if ":watermark" not in (self.query or ""):
            raise ValueError("a source with `watermark` needs :watermark in its query, e.g. WHERE updated_at >= "
                             ":watermark")

    @model_validator(mode="after")
    def _mapping_targets_exist(self) -> Source:
        known = set(canonical_names(self.table))
        targets = {target for target in self.mapping.values() if target not in known}
        unknown = sorted(targets | (set(self.values) | set(self.defaults)) - known)
        if unknown:
            columns = ", ".join(sorted(known))
            raise ValueError(f"no column {', '.join(unknown)} in table {self.table} (columns: {columns})")
        return self

    @field_validator("separator")
    @classmethod
    def _separator_is_one_byte(cls, separator: str) -> str:
        if not separator.isascii() or separator in ('"', "\n", "\r"):
            raise ValueError(f"separator {separator!r} must be one ASCII character other than a quote or newline")
        return separator

    @field_validator("date_formats")
    @classmethod
    def _formats_have_a_date(cls, formats: tuple[str, ...]) -> tuple[str, ...]:
        for fmt in formats:
            if "%Y" not in fmt and "%y" not in fmt:
                raise ValueError(f"date format {fmt!r} has no year (%Y or %y)")
        return formats

    def header_map(self) -> dict[str, str]:
        """Source header → canonical name: the configured mapping first, then the default headers."""
        return {**default_header_map(self.table), **self.mapping}

    def resolved_url(self) -> str:
        if self.url is None:
            raise ConfigError(f"source '{self.name}' has no url")
        return expand_env(self.url, where=f"source '{self.name}' url")

    def files(self, inbox_dir: Path) -> list[Path]:
        """The files matching the glob (relative globs resolve in `inbox_dir`), sorted by name."""
        if self.path is None:
            return []
        pattern = Path(self.path).expanduser()
        literal = pattern if pattern.is_absolute() else inbox_dir / pattern
        if literal.is_file():  # a plain file name, even one holding glob characters such as [1]
            return [literal]
        if pattern.is_absolute():
            anchor = Path(pattern.anchor)
            matches = anchor.glob(str(pattern.relative_to(anchor)))
        else:
            matches = inbox_dir.glob(self.path)
        return sorted(path for path in matches if path.is_file())


class SourceCatalog(_Strict):
    sources: tuple[Source, ...] = ()

    @field_validator("sources")
    @classmethod
    def _names_unique(cls, sources: tuple[Source, ...]) -> tuple[Source, ...]:
        seen: set[str] = set()
        for source in sources:
            if source.name in seen:
                raise ValueError(f"source name '{source.name}' is used twice")
            seen.add(source.name)
        return sources

    def get(self, name: str) -> Source:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(f"no source named '{name}' (known: {', '.join(s.name for s in self.sources)})")

    def for_table(self, table: str) -> list[Source]:
        return [source for source in self.sources if source.table == table]


def load_sources(config_dir: Path) -> SourceCatalog:
    """The source catalog of `config_dir/sources.yaml`; a missing file means no sources."""
    path = config_dir / SOURCES_FILE
    if not path.exists():
        return SourceCatalog()
    return load_model(path, SourceCatalog)


def adhoc_source(
    path: Path, table: str, *, encoding: Encoding = "auto", mapping: Mapping[str, str] | None = None
) -> Source:
    """A one-off source for a single file (the `validate` command), its kind taken from the file suffix."""
    suffix = path.suffix.lower().lstrip(".")
    kinds = {
        "csv": "csv",
        "txt": "csv",
        "tsv": "csv",
        "xlsx": "xlsx",
        "xlsm": "xlsx",
        "parquet": "parquet",
        "jsonl": "jsonl",
        "ndjson": "jsonl",
    }
    if suffix not in kinds:
        raise ConfigError(f"{path}: cannot tell the kind of a '.{suffix}' file (csv, xlsx, parquet or jsonl)")
    return Source(
        name=path.name,
        kind=kinds[suffix],  # type: ignore[arg-type]
        table=table,  # type: ignore[arg-type]
        path=str(path.resolve()),
        encoding=encoding,
        separator="\t" if suffix == "tsv" else ",",
        mapping=dict(mapping or {}),
    )
