"""What every command shares: settings from the root options and the environment, config, database, error exits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from config.loader import ConfigError
from config.settings import Settings, SettingsError, load_settings, yesterday_in_shanghai

# Every command starts by importing this module, so it imports only what all of them need: the configuration bundle
# (apprise, polars) and the database (SQLAlchemy) are imported when a command asks for them.
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.bundle import PermitwatchConfig

console = Console()
error_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr and the exit code: 2 for a wrong option or configuration, 1 for a failed run."""
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@dataclass
class Debugging:
    """The root `--debug` option, read when an unexpected error reaches the top (after its context is gone)."""

    enabled: bool = False


DEBUG = Debugging()


def date_option(value: str | None, option: str, *, up_to_yesterday: bool = False) -> date | None:
    """The date an option names (None when not given); with `up_to_yesterday`, no later than yesterday in
    Asia/Shanghai, the last day whose data is complete."""
    if value is None:
        return None
    latest = yesterday_in_shanghai()
    allowed = f"a date YYYY-MM-DD no later than yesterday ({latest}, Asia/Shanghai)" if up_to_yesterday else (
        "a date YYYY-MM-DD")
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option} {value!r}: not a date; expected {allowed}")
    if up_to_yesterday and day > latest:
        fail(f"{option} {day}: expected {allowed}")
    return day


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
            from tasks.alerts.apprise_setup import setup_apprise

            # Every command that reaches apprise (URL checks, sends, `serve`'s flows) loads the configuration first.
            setup_apprise()
            try:
                self._config = load_config(self.settings().config_dir)
            except ConfigError as exc:
                fail(f"bad configuration: {exc}")
        return self._config

    def source_names(self, names: list[str] | None, option: str = "--source") -> list[str] | None:
        """The names given (None for all sources), each checked against sources.yaml (which loads all config)."""
        known = [source.name for source in self.config().sources.sources]
        if not names:
            return None
        unknown = [name for name in names if name not in known]
        if unknown:
            fail(f"{option} {', '.join(unknown)}: unknown source; expected one of {', '.join(known)}")
        return names

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
