"""The deployments: four scheduled in Asia/Shanghai time (Flow.serve has no timezone argument, so each Cron carries
one), and `backfill` and `what-if`, unscheduled, for ops to run with their parameters.

The same schedules are in prefect.yaml for a work-pool deployment. Cron cannot know 调休, so `deliver` runs every
day at 08:30 and itself skips days that are not official working days, saying why in its log.
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.backfill import backfill
from flows.deliver import deliver_flow
from flows.nightly import nightly
from flows.review import review
from flows.weekly_report import weekly_report
from flows.what_if import what_if

TIMEZONE_NAME = "Asia/Shanghai"
SCHEDULES = {
    "nightly": "30 1 * * *",
    "review": "30 7 * * *",
    "deliver": "30 8 * * *",
    "weekly-report": "0 9 * * 1",
}


def deployments() -> list[RunnerDeployment]:
    def cron(name: str) -> list[Cron]:
        return [Cron(SCHEDULES[name], timezone=TIMEZONE_NAME)]

    return [
        nightly.to_deployment(name="nightly", schedules=cron("nightly"), tags=["permitwatch"], concurrency_limit=1,
                              description="Ingest, validate, store, evaluate, cards (sends nothing)."),
        review.to_deployment(name="review", schedules=cron("review"), tags=["permitwatch"], concurrency_limit=1,
                             description="督办 review: approve or hold escalations for supervisors (Resume form)."),
        deliver_flow.to_deployment(name="deliver", schedules=cron("deliver"), tags=["permitwatch"], concurrency_limit=1,
                                   description="Send pending cards on official working days, 08:30-18:00."),
        weekly_report.to_deployment(name="weekly-report", schedules=cron("weekly-report"), tags=["permitwatch"],
                                    description="Weekly statistics report to the supervisors."),
        backfill.to_deployment(name="backfill", tags=["permitwatch"], concurrency_limit=1,
                               description="Evaluation history for past dates (start, end); no cards, nothing sent."),
        what_if.to_deployment(name="what-if", tags=["permitwatch"],
                              description="Effect of proposed rules (YAML text or path); stores and sends nothing."),
    ]
