"""Everything under a config directory, loaded and cross-checked in one call, before a run starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.calendar_files import CalendarFile, load_calendar_files
from config.rules import RuleBook, load_rules
from config.sources import SourceCatalog, load_sources
from config.units import UnitDirectory, load_units


@dataclass(frozen=True)
class PermitwatchConfig:
    directory: Path
    rules: RuleBook
    units: UnitDirectory
    sources: SourceCatalog
    calendar_files: tuple[CalendarFile, ...]

    @property
    def templates_dir(self) -> Path:
        return self.directory / "templates"


def load_config(directory: Path) -> PermitwatchConfig:
    return PermitwatchConfig(
        directory=directory,
        rules=load_rules(directory),
        units=load_units(directory),
        sources=load_sources(directory),
        calendar_files=tuple(load_calendar_files(directory)),
    )
