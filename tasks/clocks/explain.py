"""The reasoning behind one clock's due date and level, day by day where it matters, as plain data and text.

The figures (due date, elapsed, remaining, days overdue, level, calendar) come from the clock engine itself
(tasks/clocks/engine.py); this module only lays the calendar out around them so that a unit disputing an alert can see
each day: counted or not, and why (weekend, holiday, make-up working day 调休, pause, restart).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from config.labels import AlertLabels, bundled_alert_labels
from tasks.clocks.builders import ClockSet, extension_days
from tasks.clocks.calendar import MAKEUP_NOTE, WorkCalendar
from tasks.clocks.engine import evaluate_clocks

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LABELS = bundled_alert_labels()
# English, with the alerts' Chinese term (config/templates/_labels.j2) beside it where they have one.
_LEVEL_WORDS = {
    "normal": "normal",
    "warning": "warning",
    "overdue": "overdue",
    "escalated": "escalated",
    "paused": "paused (特别程序 in progress)",
    "completed_on_time": "completed on time",
    "completed_late": "completed late",
}
LEVEL_NAMES = {
    level: f"{word} ({_LABELS.level_names[level]})" if level in _LABELS.level_names else word
    for level, word in _LEVEL_WORDS.items()
}
_CLOCK_WORDS = {
    "case": "Case",
    "step": "Step",
    "project": "Project",
    "deferral": "Deferred materials",
    "claim": "Supervision claim",
    "special": "Special procedure",
}
CLOCK_NAMES = {kind: f"{word} ({_LABELS.clock_type_names[kind]})" for kind, word in _CLOCK_WORDS.items()}
KIND_NAMES = {"workday": "working days (工作日)", "calendar": "calendar days (自然日)"}
PROJECT_GAP_LABEL = "no member case open and unsuspended"


class NotStartedError(LookupError):
    """The clock exists in the records but starts after the as-of date: it does not exist then."""


@dataclass(frozen=True)
class PauseLine:
    label: str
    start: date
    end: date | None  # as recorded
    restart: bool
    known: bool  # started on or before the as-of date
    open: bool  # no end known at the as-of date
    before_start: bool = False  # began before the clock started (e.g. a step that started during it)


@dataclass(frozen=True)
class MemberLine:
    """A member case of a project: counted when accepted by the as-of date."""

    case_id: str
    accepted: date
    completed: date | None  # as recorded
    known: bool  # accepted on or before the as-of date


@dataclass(frozen=True)
class ExtensionLine:
    """An extension (延期) of a case clock's limit."""

    kind: str
    granted: date
    days: int  # as granted, in `days_kind`
    days_kind: str
    added: int  # the days it adds to the clock's limit, in the clock's kind
    known: bool  # granted on or before the as-of date


@dataclass(frozen=True)
class Stretch:
    """Consecutive days that are treated alike."""

    first: date
    last: date
    what: str  # counted | rest day | paused | before start
    note: str | None  # holiday name, 调休上班, pause label
    count_first: int | None  # running count of counted days, when counted
    count_last: int | None
    after_as_of: bool  # days after the as-of date, shown up to the due date
    due: bool = False  # the due date itself

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class Explanation:
    clock: dict
    evaluation: dict
    as_of: date
    effective_start: date
    pauses: list[PauseLine]
    stretches: list[Stretch]
    calendar_notes: list[tuple[date, date, str]] = field(default_factory=list)  # holidays and make-up days met
    members: list[MemberLine] = field(default_factory=list)  # a project's cases
    extensions: list[ExtensionLine] = field(default_factory=list)  # a case clock's extensions

    def headline(self) -> str:
        clock = self.clock
        name = CLOCK_NAMES.get(clock["clock_type"], clock["clock_type"])
        return f"{name} {clock['clock_id']} — unit {clock['unit_code']}"

    def facts(self) -> list[str]:
        clock = self.clock
        extended = sum(extension.added for extension in self.extensions if extension.known)
        lines = [
            f"Limit: {clock['limit_days']} {KIND_NAMES[clock['limit_kind']]}"
            + (f" ({clock['limit_days'] - extended} + {extended} by extension)" if extended else "")
            + (f", matter {clock['matter_code']}" if clock.get("matter_code") else ""),
            f"Start: {_day(clock['start_date'])}; counting starts the next day (期间开始的当日不计入).",
        ]
        if self.effective_start != clock["start_date"]:
            lines.append(
                f"Restart: a correction (补正) ended {_day(self.effective_start)}; "
                "the full limit counts again from the next day."
            )
        if clock["limit_kind"] == "calendar":
            lines.append("A calendar-day limit ending on a rest day moves to the next working day (民法典 第203条).")
        completed = clock.get("completed_date")
        if completed is not None:
            known = completed <= self.as_of
            lines.append(f"Completed: {_day(completed)}" + ("" if known else f" (after {self.as_of}: not yet known)"))
        return lines

    def outcome(self) -> list[str]:
        result = self.evaluation
        due = result["due_date"]
        lines = [
            f"Due date: {_day(due)}" if due is not None else "Due date: not known while the clock is paused",
            f"As of {_day(self.as_of)}: elapsed {result['elapsed']}, remaining {result['remaining']}, "
            f"overdue {result['overdue_workdays']} working day(s) → {LEVEL_NAMES[result['level']]}",
        ]
        if result["level"] in ("normal", "warning"):
            lines.append(f"Warning (黄牌) from {result['warning_days']} day(s) remaining.")
        if result["level"] in ("overdue", "escalated", "normal", "warning"):
            lines.append(f"Escalation (督办) at {result['escalate_after']} working day(s) overdue.")
        lines.append(
            "Calendar: provisional (预计) — part of the period has no official holiday notice yet"
            if result["calendar"] == "provisional"
            else "Calendar: official"
        )
        return lines

    def pause_texts(self) -> list[str]:
        return [_pause_text(pause, self.as_of) for pause in self.pauses]

    def member_texts(self) -> list[str]:
        """A project's member cases: those accepted by the as-of date count, the later ones do not exist yet."""
        texts = []
        for member in self.members:
            completed = member.completed if member.completed and member.completed <= self.as_of else None
            state = (
                f"accepted {member.accepted}, "
                + (f"completed {completed}" if completed else f"open on {self.as_of}")
                if member.known
                else f"accepted {member.accepted}, after {self.as_of}: not counted"
            )
            texts.append(f"{member.case_id}: {state}")
        return texts

    def extension_texts(self) -> list[str]:
        texts = []
        for extension in self.extensions:
            added = (
                ""
                if extension.days_kind == self.clock["limit_kind"]
                else f" = {extension.added} {KIND_NAMES[self.clock['limit_kind']]} from the day granted"
            )
            state = "counted" if extension.known else f"granted after {self.as_of}: not yet known"
            texts.append(
                f"{extension.kind}: granted {extension.granted}, +{extension.days} "
                f"{KIND_NAMES[extension.days_kind]}{added}; {state}"
            )
        return texts

    def lines(self) -> list[str]:
        """The whole account as plain text."""
        out = [self.headline(), *self.facts()]
        if self.members:
            known = sum(member.known for member in self.members)
            out.append(f"Member cases ({known} of {len(self.members)} accepted by {self.as_of} are counted):")
            out.extend(f"  {text}" for text in self.member_texts())
        if self.extensions:
            out.append("Extensions (延期) of the limit:")
            out.extend(f"  {text}" for text in self.extension_texts())
        if self.pauses:
            out.append("Pauses (days after the start up to and including the end are not counted):")
            out.extend(f"  {text}" for text in self.pause_texts())
        out.append("Day by day:")
        out.extend(f"  {stretch_text(stretch)}" for stretch in self.stretches)
        if self.calendar_notes:
            out.append("Holidays and make-up working days met:")
            out.extend(f"  {_range(first, last)} {note}" for first, last, note in self.calendar_notes)
        out.extend(self.outcome())
        return out


def explain_clock(
    clock_id: str,
    clock_set: ClockSet,
    calendar: WorkCalendar,
    as_of: date,
    pause_labels: pl.DataFrame | None = None,
) -> Explanation:
    """The account of `clock_id` among the recorded clocks, as known at the end of `as_of` (ClockSet.known_at, as
    every evaluation). KeyError when there is no such clock; NotStartedError when it starts after `as_of`.

    `pause_labels` (clock_id, start_date, label) names pauses, e.g. by their suspension kind.
    """
    recorded = clock_set.clocks.filter(pl.col("clock_id") == clock_id)
    if recorded.is_empty():
        raise KeyError(clock_id)
    start = recorded["start_date"][0]
    if start > as_of:
        raise NotStartedError(f"{clock_id} starts on {start}, after {as_of}: it does not exist on that day yet")
    known_set = clock_set.known_at(as_of, calendar)
    clock_frame = known_set.clocks.filter(pl.col("clock_id") == clock_id)
    clock_pauses = known_set.pauses.filter(pl.col("clock_id") == clock_id).sort("start_date")
    evaluation = evaluate_clocks(clock_frame, clock_pauses, calendar, as_of).row(0, named=True)
    clock = clock_frame.row(0, named=True)

    labels: dict[date, str] = {}
    if pause_labels is not None:
        for row in pause_labels.filter(pl.col("clock_id") == clock_id).iter_rows(named=True):
            labels[row["start_date"]] = row["label"]
    unnamed = PROJECT_GAP_LABEL if clock["clock_type"] == "project" else None
    pause_lines = []
    for row in clock_pauses.iter_rows(named=True):
        end = row["end_date"]
        pause_lines.append(
            PauseLine(
                label=labels.get(row["start_date"], unnamed or ("restart" if row["restart"] else "pause")),
                start=row["start_date"],
                end=end,
                restart=row["restart"],
                known=row["start_date"] <= as_of,
                open=end is None or end > as_of,
                before_start=row["start_date"] < clock["start_date"],
            )
        )
    known = [pause for pause in pause_lines if pause.known]
    effective_start = max(
        [clock["start_date"], *(pause.end for pause in known if pause.restart and not pause.open and pause.end)]
    )
    completed = clock["completed_date"] if clock["completed_date"] and clock["completed_date"] <= as_of else None
    last = max(filter(None, [completed or as_of, evaluation["due_date"]]))
    days = _day_table(clock, calendar, known, effective_start, last, as_of, completed).with_columns(
        due=pl.col("date") == evaluation["due_date"] if evaluation["due_date"] else pl.lit(False)
    )
    return Explanation(
        clock=clock,
        evaluation=evaluation,
        as_of=as_of,
        effective_start=effective_start,
        pauses=pause_lines,
        stretches=_stretches(days),
        calendar_notes=_calendar_notes(days),
        members=_members(clock_set, clock, as_of),
        extensions=_extensions(clock_set, clock, calendar, as_of),
    )


def _members(clock_set: ClockSet, clock: dict, as_of: date) -> list[MemberLine]:
    if clock["clock_type"] != "project":
        return []
    members = clock_set.members.filter(pl.col("project_code") == clock["subject_id"]).sort("accepted_at", "case_id")
    return [
        MemberLine(row["case_id"], row["accepted_at"], row["completed_at"], row["accepted_at"] <= as_of)
        for row in members.iter_rows(named=True)
    ]


def _extensions(clock_set: ClockSet, clock: dict, calendar: WorkCalendar, as_of: date) -> list[ExtensionLine]:
    if clock["clock_type"] != "case":
        return []
    extensions = clock_set.extensions.filter(pl.col("case_id") == clock["subject_id"]).sort("started_at")
    added = extension_days(pl.Series([clock["limit_kind"]] * extensions.height), extensions, calendar)
    return [
        ExtensionLine(
            row["kind"], row["started_at"], row["limit_days"], row["extension_kind"], days, row["started_at"] <= as_of
        )
        for row, days in zip(extensions.iter_rows(named=True), added, strict=True)
    ]


def _day_table(
    clock: dict,
    calendar: WorkCalendar,
    pauses: list[PauseLine],
    effective_start: date,
    last: date,
    as_of: date,
    completed: date | None,
) -> pl.DataFrame:
    """One row per day after the start: is it counted, and why (not)."""
    first = clock["start_date"] + timedelta(days=1)
    days = calendar.days(first, max(first, last)).select("date", "is_workday", "note")
    paused_by = pl.lit(None, pl.String)
    for pause in reversed(pauses):  # the first pause covering a day names it
        end = date.max if pause.open or pause.end is None else pause.end
        covers = (pl.col("date") > pause.start) & (pl.col("date") <= end)
        paused_by = pl.when(covers).then(pl.lit(pause.label)).otherwise(paused_by)
    every_day = clock["limit_kind"] == "calendar"
    return (
        days.with_columns(
            paused_by=paused_by,
            before_start=pl.col("date") <= effective_start,
            after_completion=pl.lit(completed is not None) & (pl.col("date") > (completed or date.max)),
            after_as_of=pl.col("date") > as_of,
        )
        .with_columns(
            counted=~pl.col("before_start")
            & ~pl.col("after_completion")
            & (pl.lit(every_day) | pl.col("is_workday"))
            & pl.col("paused_by").is_null()
        )
        .with_columns(count=pl.col("counted").cast(pl.Int32).cum_sum())
    )


def _stretches(days: pl.DataFrame) -> list[Stretch]:
    """Consecutive days alike, merged: plain counted working days into ranges, everything notable on its own."""
    labelled = days.with_columns(
        what=pl.when(pl.col("counted"))
        .then(pl.lit("counted"))
        .when(pl.col("before_start"))
        .then(pl.lit("before start"))
        .when(pl.col("after_completion"))
        .then(pl.lit("after completion"))
        .when(pl.col("paused_by").is_not_null())
        .then(pl.lit("paused"))
        .otherwise(pl.lit("rest day")),
        note=pl.when(pl.col("before_start") | pl.col("after_completion"))
        .then(None)
        .otherwise(pl.coalesce("paused_by", "note")),
    ).with_columns(
        group=(
            (pl.col("what") != pl.col("what").shift(1))
            | (pl.col("note").fill_null("") != pl.col("note").shift(1).fill_null(""))
            | (pl.col("after_as_of") != pl.col("after_as_of").shift(1))
            | pl.col("due")
            | pl.col("due").shift(1)
        )
        .fill_null(True)
        .cum_sum()
    )
    grouped = labelled.group_by("group", maintain_order=True).agg(
        first=pl.col("date").first(),
        last=pl.col("date").last(),
        what=pl.col("what").first(),
        note=pl.col("note").first(),
        count_first=pl.col("count").first(),
        count_last=pl.col("count").last(),
        after_as_of=pl.col("after_as_of").first(),
        due=pl.col("due").first(),
    )
    return [
        Stretch(
            first=row["first"],
            last=row["last"],
            what=row["what"],
            note=row["note"],
            count_first=row["count_first"] if row["what"] == "counted" else None,
            count_last=row["count_last"] if row["what"] == "counted" else None,
            after_as_of=row["after_as_of"],
            due=row["due"],
        )
        for row in grouped.iter_rows(named=True)
    ]


def _calendar_notes(days: pl.DataFrame) -> list[tuple[date, date, str]]:
    noted = days.filter(pl.col("note").is_not_null()).with_columns(
        group=(
            (pl.col("note") != pl.col("note").shift(1))
            | (pl.col("date") - pl.col("date").shift(1) != timedelta(days=1))
        )
        .fill_null(True)
        .cum_sum()
    )
    grouped = noted.group_by("group", maintain_order=True).agg(
        pl.col("date").first().alias("first"), pl.col("date").last().alias("last"), pl.col("note").first()
    )
    return [(row["first"], row["last"], row["note"]) for row in grouped.iter_rows(named=True)]


def stretch_text(stretch: Stretch) -> str:
    when = _range(stretch.first, stretch.last)
    if stretch.what == "counted":
        counts = (
            f"day {stretch.count_first}"
            if stretch.count_first == stretch.count_last
            else f"days {stretch.count_first}–{stretch.count_last}"
        )
        text = f"{when}  counted, {counts}"
        if stretch.note and MAKEUP_NOTE in stretch.note:
            text += f" — make-up working day {stretch.note}"
        elif stretch.note:
            text += f" — {stretch.note}"
    elif stretch.what == "paused":
        text = f"{when}  paused ({stretch.note})"
    elif stretch.what == "rest day":
        text = f"{when}  not counted: " + (f"holiday {stretch.note}" if stretch.note else "weekend")
    elif stretch.what == "after completion":
        text = f"{when}  after completion"
    else:
        text = f"{when}  not counted: the count starts over after the correction (补正)"
    if stretch.due:
        text += "  ← due date"
    return text + ("  [after the as-of date]" if stretch.after_as_of else "")


def _pause_text(pause: PauseLine, as_of: date) -> str:
    end = "open" if pause.end is None else pause.end.isoformat()
    effect = "restarts the limit when it ends" if pause.restart else "stops the clock"
    state = (
        f"not yet known on {as_of}"
        if not pause.known
        else ("still open on " + as_of.isoformat() if pause.open else "ended")
    )
    before = "; began before this clock started, so it pauses the clock from its start" if pause.before_start else ""
    return f"{pause.label}: ({pause.start}, {end}] — {effect}{before}; {state}"


def _day(day: date | None) -> str:
    return "—" if day is None else f"{day.isoformat()} ({WEEKDAYS[day.weekday()]})"


def _range(first: date, last: date) -> str:
    if first == last:
        return _day(first)
    return f"{_day(first)} – {_day(last)}"


# -- which clock: the ids printed in alerts ------------------------------------------------------------------------
# An alert names a subject (a case id, a push id or a project code) and its clocks by label (办件, 环节「城市审批」, …).
# `explain` takes the subject and lists its clocks; a clock is chosen by its id, its id without the subject
# (step:2, deferral, special:专家评审:2026-03-02), or its label as printed.

# Most urgent first when a subject's clocks are listed and none is chosen.
URGENCY = ("escalated", "overdue", "warning", "paused", "normal", "completed_late", "completed_on_time")
# Clock ids that name their subject's case after the prefix (step:C1:2, special:C1:专家评审:2026-03-02).
CASE_CLOCK_PREFIXES = ("case", "step", "deferral", "special")


@dataclass(frozen=True)
class Subject:
    """What an id names: a case, a push (审管推送) or a project, and the clock id it spelled out, if any."""

    kind: str  # case | claim | project
    id: str
    clock_id: str | None = None


def parse_subject(text: str) -> Subject:
    """An id as typed: a bare id (its kind is looked up later: kind "") or a clock id with its prefix."""
    prefix, _, rest = text.partition(":")
    if rest and prefix in CASE_CLOCK_PREFIXES:
        return Subject("case", rest.split(":")[0], text)
    if rest and prefix in ("claim", "project"):
        return Subject(prefix, rest, text)
    return Subject("", text)


def of_subject(subject: Subject) -> pl.Expr:
    """The clocks of `subject`: a case's own clocks (not its project's), or the push's or project's clock."""
    if subject.kind == "case":
        return (pl.col("case_id") == subject.id) & (pl.col("clock_type") != "project")
    return (pl.col("clock_type") == subject.kind) & (pl.col("subject_id") == subject.id)


def subject_clocks(evaluated: pl.DataFrame, subject: Subject) -> pl.DataFrame:
    """The evaluated clocks of `subject`, most urgent first, with `selector` (the id without its subject)."""
    mine = evaluated.filter(of_subject(subject))
    ranks = {level: rank for rank, level in enumerate(URGENCY)}
    return mine.with_columns(
        pl.col("level").replace_strict(ranks, default=len(ranks), return_dtype=pl.Int32).alias("urgency"),
        clock_selector(subject.id).alias("selector"),
    ).sort(["urgency", "overdue_workdays", "remaining", "clock_id"], descending=[False, True, False, False],
           nulls_last=True)


def clock_selector(subject_id: str) -> pl.Expr:
    """step:C1:2 → step:2, case:C1 → case, special:C1:专家评审:2026-03-02 → special:专家评审:2026-03-02; a claim
    keeps its push id (a case may have several pushes), a project clock is `project`."""
    without = pl.col("clock_id").str.replace(":" + subject_id, "", literal=True, n=1)
    clock_type = pl.col("clock_type")
    return (
        pl.when(clock_type == "project")
        .then(clock_type)
        .when(clock_type == "claim")
        .then(pl.col("clock_id"))
        .otherwise(without)
    )


def choose_clock(listing: pl.DataFrame, wanted: str | None) -> str:
    """The clock id `wanted` names among `listing` (subject_clocks with a `label` column), or the most urgent.

    Raises LookupError naming the choices when `wanted` matches none or several."""
    if listing.is_empty():
        raise LookupError("no clock has started by the as-of date")
    if wanted is None:
        return listing.get_column("clock_id")[0]
    text = wanted.strip()
    for column in ("clock_id", "selector", "label"):
        found = listing.filter(pl.col(column) == text)
        if found.height == 1:
            return found.get_column("clock_id")[0]
    # A prefix of the selector: special:专家评审 or step (when the case has one step in alert).
    found = listing.filter(pl.col("selector").str.starts_with(text + ":") | (pl.col("clock_type") == text))
    if found.height == 1:
        return found.get_column("clock_id")[0]
    choices = ", ".join(f"{selector} ({label})" for selector, label in listing.select("selector", "label").iter_rows())
    several = "several clocks match" if found.height > 1 else "no clock matches"
    raise LookupError(f"{several} --clock {text!r}; choose one of: {choices}")


def clock_labels(listing: pl.DataFrame, tables: Mapping[str, pl.DataFrame], labels: AlertLabels) -> pl.Series:
    """Each listed clock's label as the alerts print it (the vocabulary of `labels`), steps by their step_name."""
    steps = tables.get("steps")
    named = listing
    if steps is not None and not steps.is_empty():
        names = steps.select(
            pl.format("step:{}:{}", "case_id", "step_no").alias("clock_id"), pl.col("step_name").cast(pl.String)
        )
        named = listing.join(names, on="clock_id", how="left", maintain_order="left")
    return named.select(labels.clock_label(named)).to_series()


def pause_labels(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Pauses named by their suspension kind, for the case clock and its steps."""
    suspensions = tables.get("suspensions")
    if suspensions is None or suspensions.is_empty():
        return pl.DataFrame(schema={"clock_id": pl.String, "start_date": pl.Date, "label": pl.String})
    named = suspensions.select(
        "case_id", pl.col("started_at").cast(pl.Date).alias("start_date"), pl.col("kind").alias("label")
    )
    return pl.concat(
        [
            named.select(pl.format("case:{}", "case_id").alias("clock_id"), "start_date", "label"),
            *(
                named.join(steps.select("case_id", "step_no"), on="case_id").select(
                    pl.format("step:{}:{}", "case_id", "step_no").alias("clock_id"), "start_date", "label"
                )
                for steps in [tables.get("steps")]
                if steps is not None and not steps.is_empty()
            ),
        ]
    )
