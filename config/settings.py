"""Runtime settings from the environment (PERMITWATCH_*), validated at start."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, NonNegativeFloat, PositiveFloat, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TIMEZONE = ZoneInfo("Asia/Shanghai")
BUNDLED_CONFIG_DIR = Path(__file__).resolve().parent


class SettingsError(ValueError):
    """A PERMITWATCH_* setting is invalid; the message names the setting."""


def yesterday_in_shanghai(now: datetime | None = None) -> date:
    """The default as-of date: the end of yesterday, Asia/Shanghai."""
    current = (now or datetime.now(TIMEZONE)).astimezone(TIMEZONE)
    return current.date() - timedelta(days=1)


def check_as_of(day: date) -> date:
    """An as-of date must be yesterday (Asia/Shanghai) or earlier: a later day has no complete data, and its clocks
    would count working days that have not happened (a typo such as 2030 for 2026 would send years-overdue alerts)."""
    latest = yesterday_in_shanghai()
    if day > latest:
        raise ValueError(f"as-of date {day} is later than yesterday ({latest}, Asia/Shanghai)")
    return day


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PERMITWATCH_", extra="ignore")

    config_dir: Path = BUNDLED_CONFIG_DIR
    var_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite in var_dir (the embedded default)
    outbox_dir: Path | None = None
    inbox_dir: Path | None = None
    as_of: date | None = None
    # I/O tasks (source reads, database writes) retry once per entry, waiting that many seconds (backoff).
    retry_delays: tuple[NonNegativeFloat, ...] = (2.0, 10.0, 30.0)
    # Delivery. A send that gets no answer within its channel's timeout is given up and kept pending as "timeout: may
    # have been delivered" for the next delivery: a longer timeout means fewer repeats from a slow gateway, a shorter
    # one frees the sending slot sooner. Connecting is timed separately (an unreachable server received nothing).
    email_timeout: PositiveFloat = 60.0
    sms_timeout: PositiveFloat = 30.0
    im_timeout: PositiveFloat = 15.0
    connect_timeout: PositiveFloat = 5.0
    # The digest's idempotency key goes to HTTP SMS gateways (json://, form://) in this header and/or body field;
    # empty turns either off.
    sms_idempotency_header: str = "Idempotency-Key"
    sms_idempotency_field: str = ""
    # A delivery attempt holds the rows it is sending under a lease it renews while it runs; a lease not renewed for
    # this long belongs to a dead attempt (on another host, where its process cannot be looked up).
    delivery_lease_seconds: float = Field(default=60.0, ge=5.0)

    @field_validator("config_dir")
    @classmethod
    def _config_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"config directory {value} does not exist")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            return f"sqlite:///{info.data.get('var_dir', Path('var')) / 'permitwatch.db'}"
        from sqlalchemy.engine import make_url

        try:
            make_url(value)
        except Exception as exc:
            raise ValueError(f"not a SQLAlchemy URL: {exc}") from exc
        return value

    @field_validator("as_of")
    @classmethod
    def _as_of_is_past(cls, value: date | None) -> date | None:
        if value is not None:
            check_as_of(value)
        return value

    def send_timeout(self, channel: str) -> float:
        return {"email": self.email_timeout, "sms": self.sms_timeout}.get(channel, self.im_timeout)

    @property
    def effective_as_of(self) -> date:
        return self.as_of or yesterday_in_shanghai()

    @property
    def effective_outbox_dir(self) -> Path:
        return self.outbox_dir or self.var_dir / "outbox"

    @property
    def memo_dir(self) -> Path:
        """Where the nightly run keeps, per source, the memo of rows already checked (tasks/ingest/memo.py)."""
        return self.var_dir / "memo"

    @property
    def effective_inbox_dir(self) -> Path:
        """Where file sources' relative globs are resolved (the nightly exports land here)."""
        return self.inbox_dir or self.var_dir / "inbox"


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's error into one that names the PERMITWATCH_* variable."""
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            option = " (or --config)" if field == "config_dir" else ""
            problems.append(f"PERMITWATCH_{field.upper()}{option}: {error['msg']}")
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None
