"""An operator's mistake gets one clear line: options and config are checked before any flow starts, with exit code 2,
nothing stored and no flow run; an unexpected error is one line plus a hint, its traceback only with --debug."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import ALLOCATOR_SETTING
from cli.main import ANALYTICS_SETTING, EPHEMERAL_STARTUP_SECONDS, EPHEMERAL_STARTUP_SETTING, app
from config.settings import BUNDLED_CONFIG_DIR, yesterday_in_shanghai
from schemas.contracts import empty_frame
from schemas.database import ensure_schema
from tasks.store.upsert import store_table

REPO_ROOT = Path(__file__).resolve().parents[1]
PERMITWATCH = Path(sys.executable).parent / "permitwatch"
YESTERDAY = yesterday_in_shanghai()
TOMORROW = YESTERDAY + timedelta(days=2)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A working folder with its own var/ and Prefect home: whatever a command stores or starts shows up here."""
    (tmp_path / "var").mkdir()
    return tmp_path


def permitwatch(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a clean environment, as cron or systemd would start it."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PERMITWATCH_VAR_DIR": str(home / "var"),
        "PREFECT_HOME": str(home / "prefect"),
        **env,
    }
    return subprocess.run([str(PERMITWATCH), *args], cwd=REPO_ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


def config_copy(home: Path, replace: dict[str, str] | None = None, write: dict[str, str] | None = None) -> Path:
    directory = home / "config"
    shutil.copytree(BUNDLED_CONFIG_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for name, text in (write or {}).items():
        (directory / name).write_text(text, encoding="utf-8")
    for old, new in (replace or {}).items():
        units = directory / "units.yaml"
        content = units.read_text(encoding="utf-8")
        assert old in content
        units.write_text(content.replace(old, new, 1), encoding="utf-8")
    return directory


def assert_refused(outcome: subprocess.CompletedProcess[str], home: Path, line: str) -> None:
    """Exit 2, exactly one line on stderr (the expected one), no traceback, nothing stored, no flow run."""
    assert outcome.returncode == 2, (outcome.stdout, outcome.stderr)
    assert outcome.stderr.strip().splitlines() == [line], outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    assert list((home / "var").iterdir()) == [], "nothing stored"
    assert not (home / "prefect" / "prefect.db").exists(), "no flow run was created"


LATEST = f"no later than yesterday ({YESTERDAY}, Asia/Shanghai)"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["run", "--as-of", "2030-01-01"], f"error: --as-of 2030-01-01: expected a date YYYY-MM-DD {LATEST}"),
        (["run", "--as-of", "2026-02-30"],
         f"error: --as-of '2026-02-30': not a date; expected a date YYYY-MM-DD {LATEST}"),
        (["run", "--source", "cases", "--source", "nosuch"],
         "error: --source nosuch: unknown source; expected one of cases, steps, suspensions, projects, deferrals, "
         "pushes"),
        (["backfill", "--from", "2026-11-01", "--to", str(TOMORROW)],
         f"error: --to {TOMORROW}: expected a date YYYY-MM-DD {LATEST}"),
        (["backfill", "--from", "2026-11-10", "--to", "2026-11-01"],
         "error: --from 2026-11-10: expected a date no later than --to (2026-11-01)"),
        (["backfill", "--from", "2024-01-01", "--to", "2026-11-01"],
         "error: --from 2024-01-01 --to 2026-11-01: expected at most 400 days; split the range"),
        (["report", "--as-of", "2030-01-01"], f"error: --as-of 2030-01-01: expected a date YYYY-MM-DD {LATEST}"),
    ],
    ids=["future-as-of", "bad-date", "unknown-source", "backfill-future", "backfill-reversed", "backfill-too-long",
         "report-future"],
)
def test_a_wrong_option_is_one_line_and_exit_2(home: Path, args: list[str], line: str) -> None:
    assert_refused(permitwatch(home, *args), home, line)


def test_a_future_as_of_in_the_environment_is_refused(home: Path) -> None:
    outcome = permitwatch(home, "run", PERMITWATCH_AS_OF="2030-01-01")
    assert_refused(outcome, home, "error: invalid setting: PERMITWATCH_AS_OF: Value error, as-of date 2030-01-01 is "
                                  f"later than yesterday ({YESTERDAY}, Asia/Shanghai)")


@pytest.mark.parametrize("command", [["run"], ["backfill", "--from", "2026-11-01", "--to", "2026-11-02"], ["demo"],
                                     ["deliver"], ["serve"]])
def test_a_config_with_an_unset_variable_stops_every_command_before_it_starts(home: Path, command: list[str]) -> None:
    config = config_copy(home, replace={'url: "outbox://email"': 'url: "mailto://${PW_UNSET_SMTP}@10.0.0.1"'})
    outcome = permitwatch(home, "--config", str(config), *command)
    assert_refused(outcome, home, f"error: bad configuration: {config}/units.yaml: entry '360700WXB': contact 1 "
                                  "(email): environment variable PW_UNSET_SMTP is not set")


def test_bad_yaml_stops_run_before_it_starts(home: Path) -> None:
    config = config_copy(home, write={"sources.yaml": "sources:\n  - name: cases\n    kind: [csv\n"})
    outcome = permitwatch(home, "--config", str(config), "run")
    assert outcome.returncode == 2 and len(outcome.stderr.strip().splitlines()) >= 1
    assert outcome.stderr.startswith(f"error: bad configuration: {config}/sources.yaml: not valid YAML")
    assert "Traceback" not in outcome.stderr
    assert not (home / "prefect" / "prefect.db").exists() and list((home / "var").iterdir()) == []


def test_an_unexpected_error_is_one_line_with_a_hint_and_its_traceback_only_with_debug(home: Path) -> None:
    unreachable = {"PERMITWATCH_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"}
    outcome = permitwatch(home, "silence", "list", **unreachable)
    assert outcome.returncode == 1
    [line] = outcome.stderr.strip().splitlines()
    assert line.startswith("error: unexpected OperationalError: ")
    assert line.endswith("(run again with --debug for the traceback)")

    debugged = permitwatch(home, "--debug", "silence", "list", **unreachable)
    assert debugged.returncode == 1
    assert "Traceback" in debugged.stderr and "OperationalError" in debugged.stderr


def test_analytics_are_off_unless_the_user_turned_them_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ANALYTICS_SETTING, raising=False)
    assert CliRunner().invoke(app, ["calendar", "check"]).exit_code in (0, 1)
    assert os.environ[ANALYTICS_SETTING] == "false"
    monkeypatch.setenv(ANALYTICS_SETTING, "true")
    CliRunner().invoke(app, ["calendar", "check"])
    assert os.environ[ANALYTICS_SETTING] == "true"


def test_a_temporary_prefect_server_gets_time_to_start_on_a_busy_host(home: Path) -> None:
    """Prefect reads its settings once per process, so each case is a fresh process, as cron starts it."""
    probe = (
        "from typer.testing import CliRunner\n"
        "from cli.main import app\n"
        "CliRunner().invoke(app, ['calendar', 'check'])\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().server.ephemeral.startup_timeout_seconds)\n"
    )

    def seconds(**env: str) -> str:
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                       "PREFECT_HOME": str(home / "prefect"), **env}
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=environment, capture_output=True,
                              text=True, timeout=120, check=True)
        return done.stdout.strip().splitlines()[-1]

    assert seconds() == EPHEMERAL_STARTUP_SECONDS
    assert seconds(**{EPHEMERAL_STARTUP_SETTING: "45"}) == "45"


def test_memory_polars_frees_goes_back_to_the_system_at_once(home: Path) -> None:
    """A fresh process, as cron starts it: after `import cli`, a 800 MB frame let go is no longer resident; with
    jemalloc's own default (set in the environment, which wins) it still is."""
    probe = (
        "import cli\n"
        "import polars as pl\n"
        "def resident() -> int:\n"
        "    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024\n"
        "frame = pl.select(pl.int_range(50_000_000).alias('x')).with_columns(y=pl.col('x') * 2)\n"
        "held = resident()\n"
        "del frame\n"
        "print(held, resident())\n"
    )

    def resident_mb(**env: str) -> tuple[int, int]:
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **env}
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=environment, capture_output=True,
                              text=True, timeout=120, check=True)
        held, after = done.stdout.split()
        return int(held), int(after)

    held, after = resident_mb()
    assert held > 700 and after < held - 600
    held, after = resident_mb(**{ALLOCATOR_SETTING: "dirty_decay_ms:10000"})
    assert held > 700 and after > held - 100


def test_a_silence_for_an_unknown_case_or_matter_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    monkeypatch.setenv("PERMITWATCH_DATABASE_URL", url)
    monkeypatch.delenv("PERMITWATCH_CONFIG_DIR", raising=False)
    engine = ensure_schema(url)
    case = pl.concat([empty_frame("cases"), pl.DataFrame(
        {"case_id": ["GZ1"], "matter_code": ["XX-0001"], "unit_code": ["360702SPJ"],
         "accepted_at": [YESTERDAY]})], how="diagonal_relaxed")
    store_table(engine, "cases", case, run_id=None)
    engine.dispose()
    until = str(YESTERDAY + timedelta(days=30))

    def add(*scope: str) -> str:
        outcome = CliRunner().invoke(app, ["silence", "add", *scope, "--until", until, "--reason", "评审"])
        assert outcome.exit_code == 0, outcome.output
        return " ".join(outcome.output.split())

    assert "warning: --case GZ9: no stored case has this id" in add("--case", "GZ9")
    assert "warning" not in add("--case", "GZ1")
    assert "warning: --matter NOPE-1: no matter in rules.yaml or in the stored cases has this code" in add(
        "--matter", "NOPE-1")
    assert "warning" not in add("--matter", "XX-0001")
