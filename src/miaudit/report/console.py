"""Terminal tables of metrics (rich), shared by every ``miaudit`` command that prints results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from rich import box
from rich.table import Table
from rich.text import Text

from miaudit._format import format_fpr
from miaudit.exceptions import ValidationError
from miaudit.metrics import MetricsSummary, TprAtFpr

if TYPE_CHECKING:
    from miaudit.audit.sanity import Check

__all__ = ["checks_markup", "format_fpr", "metrics_table"]

Layout = Literal["auto", "rows", "columns"]
#: With ``layout="auto"``, up to this many summaries are shown one per column.
AUTO_COLUMNS_MAX = 3

#: Marks a TPR whose target FPR is below the resolution 1 / n_non_members.
BELOW_RESOLUTION_MARK = "†"
_MISSING = "–"


def _percent(x: float) -> str:
    return f"{100 * x:.2f}%"


def _tpr_cell(r: TprAtFpr | None, sep: str) -> Text:
    if r is None:
        return Text(_MISSING)
    cell = Text(_percent(r.tpr))
    if not r.reachable:
        cell.append(BELOW_RESOLUTION_MARK, style="yellow")
    lo, hi = r.tpr_interval
    cell.append(f"{sep}[{100 * lo:.2f}, {100 * hi:.2f}]", style="dim")
    return cell


def _auc_cell(s: MetricsSummary, sep: str) -> Text:
    lo, hi = s.auc_interval
    return Text(f"{s.auc:.4f}") + Text(f"{sep}[{lo:.4f}, {hi:.4f}]", style="dim")


def _targets(summaries: Mapping[str, MetricsSummary]) -> list[float]:
    """Target FPRs of all summaries, in first-seen order."""
    seen: dict[float, None] = {}
    for s in summaries.values():
        for r in s.tpr_at_fpr:
            seen.setdefault(r.target_fpr, None)
    return list(seen)


def _caption(summaries: Mapping[str, MetricsSummary]) -> str | None:
    below = {}
    for name, s in summaries.items():
        unreachable = [r for r in s.tpr_at_fpr if not r.reachable]
        if unreachable:
            below[name] = unreachable[0].min_reachable_fpr
    notes = []
    if below:
        if len(set(below.values())) == 1:
            reach = f"{next(iter(below.values())):.3g}"
        else:
            reach = ", ".join(f"{v:.3g} ({n})" for n, v in below.items())
        notes.append(
            f"{BELOW_RESOLUTION_MARK} target FPR below 1/n_non_members, shown at FPR 0; "
            f"smallest reachable FPR {reach}"
        )
    first = next(iter(summaries.values()), None)
    if first is not None:
        how = (
            "threshold chosen on half the records, bound on the other half"
            if first.epsilon.selection == "split"
            else "the best over thresholds chosen on these records (optimistic)"
        )
        notes.append(
            f"[..]: {100 * (1 - first.alpha):g}% intervals (AUC: bootstrap; TPR: "
            f"Clopper-Pearson). ε: (ε, δ={first.epsilon.delta:g})-DP lower bound, {how}"
        )
    return "\n".join(notes) or None


def metrics_table(
    summaries: Mapping[str, MetricsSummary],
    *,
    name_header: str = "attack",
    title: str | None = None,
    layout: Layout = "auto",
) -> Table:
    """A rich table of named :class:`~miaudit.metrics.MetricsSummary` objects.

    Shows the AUC with its bootstrap interval, the best balanced accuracy, the advantage, the
    TPR at each target FPR (union over the summaries) with its Clopper–Pearson interval, and the
    epsilon lower bound. A TPR whose target FPR is below ``1 / n_non_members`` is marked ``†``
    (it is the TPR at FPR 0); the caption gives the smallest reachable FPR.

    Parameters
    ----------
    summaries : mapping of str to MetricsSummary
        Row (or column) name — attack, score file, ... — to its metrics.
    name_header : str
        Header of the name column in the ``"rows"`` layout ("attack", "scores", ...).
    title : str, optional
        Table title.
    layout : {"auto", "rows", "columns"}
        ``"rows"``: one row per summary (to compare many attacks); ``"columns"``: one column
        per summary, one row per metric (narrow); ``"auto"``: columns for up to
        :data:`AUTO_COLUMNS_MAX` summaries, else rows.
    """
    if layout not in ("auto", "rows", "columns"):
        raise ValidationError(f"layout: expected 'auto', 'rows' or 'columns', got {layout!r}")
    if layout == "auto":
        layout = "columns" if len(summaries) <= AUTO_COLUMNS_MAX else "rows"
    targets = _targets(summaries)
    table = Table(
        title=title,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        caption=_caption(summaries),
        caption_justify="left",
    )
    if layout == "columns":
        table.add_column("metric", style="bold")
        for name in summaries:
            table.add_column(name, justify="right", overflow="fold")
        sums = list(summaries.values())
        table.add_row("AUC", *(_auc_cell(s, " ") for s in sums))
        table.add_row("balanced accuracy", *(f"{s.balanced_accuracy:.4f}" for s in sums))
        table.add_row("advantage", *(f"{s.advantage:.4f}" for s in sums))
        for t in targets:
            table.add_row(f"TPR @ {format_fpr(t)} FPR", *(_tpr_cell(s.find(t), " ") for s in sums))
        table.add_row("ε lower bound", *(f"{s.epsilon.epsilon:.3f}" for s in sums))
        return table
    table.add_column(name_header, style="bold", no_wrap=True)
    table.add_column("AUC", justify="right")
    table.add_column("bal.\nacc.", justify="right")
    table.add_column("adv.", justify="right")
    for t in targets:
        table.add_column(f"TPR@\n{format_fpr(t)}", justify="right")
    table.add_column("ε ≥", justify="right")
    for name, s in summaries.items():
        table.add_row(
            name,
            _auc_cell(s, "\n"),
            f"{s.balanced_accuracy:.4f}",
            f"{s.advantage:.4f}",
            *(_tpr_cell(s.find(t), "\n") for t in targets),
            f"{s.epsilon.epsilon:.3f}",
        )
    return table


def checks_markup(checks: Sequence[Check]) -> list[str]:
    """Rich-markup lines for failed sanity checks (:mod:`miaudit.audit.sanity`): a red
    ``CHECK FAILED`` or a yellow ``warning`` with the reason, then the fix."""
    from rich.markup import escape

    lines = []
    for c in checks:
        tag = (
            "[bold red]CHECK FAILED[/bold red]"
            if c.severity == "fail"
            else "[yellow]warning[/yellow]"
        )
        lines.append(f"{tag} ({escape(c.id)}): {escape(c.reason)}")
        lines.append(f"  [dim]fix:[/dim] {escape(c.fix)}")
    return lines
