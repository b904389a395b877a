"""`what-if`: the effect of proposed rules on the stored clocks, for ops to run from the UI. Stores and sends nothing.

The proposed rules are a parameter: YAML text in the format of rules.yaml (only the entries that change) or the path
of such a file on the machine that runs the flow. They are checked before anything is read. The run writes the XLSX,
HTML and chart (tasks/reports/simulate_report.py) and publishes its summary as the markdown artifact `what-if`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from config.proposal import ProposedRules, load_proposal
from config.settings import load_settings
from tasks.alerts.apprise_setup import setup_apprise
from tasks.pipeline import STAGE, RunContext, read_stored
from tasks.reports.report import dimensions_from_config
from tasks.reports.simulate import WhatIf, simulate, window_start
from tasks.reports.simulate_report import WhatIfFiles, markdown_summary, summary_lines, write_what_if

ARTIFACT_KEY = "what-if"


@task(name="simulate", **STAGE)
def simulate_task(
    context: RunContext, proposal: ProposedRules, tables: dict[str, pl.DataFrame], window: str
) -> WhatIf:
    """Every clock evaluated under the rules in force and under the proposal, compared."""
    config = context.config
    dimensions = dimensions_from_config(config.rules, config.units)
    return simulate(tables, config.rules, proposal, context.calendar, dimensions, context.as_of, window)


@task(name="write-what-if", **STAGE)
def write_task(context: RunContext, result: WhatIf, output_dir: str | None) -> WhatIfFiles:
    directory = Path(output_dir) if output_dir else context.settings.var_dir / "what-if"
    return write_what_if(result, directory, context.config.templates_dir)


@flow(name="what-if", flow_run_name="what-if-{as_of}")
def what_if(
    proposed_rules: str, as_of: date | None = None, window: str = "12m", output_dir: str | None = None
) -> dict[str, object]:
    """Retrospective on-time rates over the `window` before `as_of` (default: yesterday, Asia/Shanghai) as if the
    proposed rules had always applied, and the open clocks under them."""
    setup_apprise()
    context = RunContext.prepare(load_settings(), as_of)
    proposal = load_proposal(proposed_rules, context.config.rules)
    window_start(context.as_of, window)
    result = simulate_task(context, proposal, context.io(read_stored)(context), window)
    files = write_task(context, result, output_dir)
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=markdown_summary(result),
                             description=f"what-if as of {context.as_of}")
    for line in summary_lines(result):
        get_run_logger().info(line)
    return {"as_of": context.as_of.isoformat(), "changes": result.changes, "xlsx": str(files.xlsx),
            "html": str(files.html)}
