"""What every command shares: settings from the root options and the environment, config, database, error exits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from config.loader import ConfigError
from config.settings import Settings, SettingsError, load_settings

# Every command starts by importing this module, so it imports only what all of them need: the configuration bundle
# (apprise, polars) and the database (SQLAlchemy) are imported when a command asks for them.
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.bundle import PermitwatchConfig

console = Console()
error_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    error_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@dataclass
class CliState:
    config_dir: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _config: PermitwatchConfig | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(config_dir=self.config_dir)
            except SettingsError as exc:
                fail(str(exc))
        return self._settings

    def config(self) -> PermitwatchConfig:
        if self._config is None:
            from config.bundle import load_config

            try:
                self._config = load_config(self.settings().config_dir)
            except ConfigError as exc:
                fail(f"bad configuration:\n{exc}")
        return self._config

    def engine(self) -> Engine:
        if self._engine is None:
            from schemas.database import ensure_schema

            self._engine = ensure_schema(self.settings().database_url)
        return self._engine


def state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
