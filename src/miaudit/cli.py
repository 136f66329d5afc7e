"""The ``miaudit`` command.

Each command is one function decorated with ``@app.command()`` and ``@cli_errors``; shared
helpers (reading a score file, parsing FPR lists, printing a metrics table, writing JSON) live
in this module so that new commands reuse them. Errors that miaudit raises on purpose
(:class:`~miaudit.exceptions.MiauditError`) are printed as one red line on stderr and exit with
status 2, without a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import numpy as np
import pandas as pd
import typer
from numpy.typing import NDArray
from rich.console import Console
from rich.markup import escape

from miaudit import __version__
from miaudit._validation import (
    check_array,
    check_both_classes,
    check_membership,
    check_probability,
)
from miaudit.exceptions import MiauditError, ValidationError
from miaudit.metrics import DEFAULT_ALPHA, DEFAULT_DELTA, DEFAULT_FPRS, DEFAULT_N_BOOTSTRAP

__all__ = [
    "EXIT_ERROR",
    "ScoreFile",
    "app",
    "cli_errors",
    "load_score_file",
    "parse_fprs",
    "write_json",
]

#: Exit status of a command that failed on bad input (as for usage errors).
EXIT_ERROR = 2
#: File suffixes read as CSV / Parquet.
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Record ids listed when reporting NaN scores.
MAX_IDS_SHOWN = 5

app = typer.Typer(
    name="miaudit",
    help="Membership inference attacks and privacy audits. Higher score = member, always.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
#: Width of tables written to a file or a CI log (a terminal uses its own width): wide enough
#: for the metrics table with its intervals on one line per attack.
LOG_WIDTH = 140
console = Console(width=None if sys.stdout.isatty() else LOG_WIDTH)
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- shared helpers
def fail(message: str) -> NoReturn:
    """Print ``message`` as one red line on stderr and exit with :data:`EXIT_ERROR`."""
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(EXIT_ERROR)


def cli_errors(fn: F) -> F:
    """Turn miaudit's own errors (and unreadable files) into :func:`fail`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MiauditError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class ScoreFile:
    """Scores read from a CSV or Parquet file.

    Attributes
    ----------
    path : Path
        The file.
    scores : ndarray of shape (n,), float64
        Higher = member; may contain NaN (counted by :func:`miaudit.metrics.summarize`).
    is_member : ndarray of shape (n,), bool
    record_ids : ndarray of shape (n,) or None
        The id column, when one was named.
    """

    path: Path
    scores: NDArray[np.float64]
    is_member: NDArray[np.bool_]
    record_ids: NDArray | None = None


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if not path.exists():
        raise ValidationError(f"{path}: file not found")
    try:
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(path)
        if name.endswith(CSV_SUFFIXES):
            return pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
    except (ValueError, ImportError, OSError) as exc:
        raise ValidationError(f"{path}: could not read the file ({exc})") from None
    raise ValidationError(
        f"{path}: unsupported file type; expected one of "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
    )


def _column(df: pd.DataFrame, col: str, what: str, option: str, path: Path) -> pd.Series:
    if col not in df.columns:
        present = ", ".join(repr(str(c)) for c in df.columns)
        raise ValidationError(
            f"{path.name}: {what} column {col!r} not found (choose it with {option}); "
            f"columns present: {present}"
        )
    return df[col]


def load_score_file(
    path: str | Path,
    *,
    score_col: str = "score",
    member_col: str = "is_member",
    id_col: str | None = None,
) -> ScoreFile:
    """Read per-record scores and membership from a CSV/TSV or Parquet file.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet`` or ``.pq``.
    score_col : str
        Numeric column of scores (higher = member). Empty cells are NaN and are kept.
    member_col : str
        Membership column: boolean, 0/1, or ``true``/``false``/``yes``/``no``.
    id_col : str, optional
        Column of unique record ids.

    Raises
    ------
    ValidationError
        Unreadable file, a missing column (the message lists the columns present),
        non-numeric scores, membership that is not boolean/0-1, no members or no non-members,
        duplicate ids.
    """
    path = Path(path)
    df = _read_table(path)
    if df.empty:
        raise ValidationError(
            f"{path}: the file has no rows (columns: {', '.join(map(str, df.columns))})"
        )
    raw_scores = _column(df, score_col, "score", "--score-col", path)
    raw_member = _column(df, member_col, "membership", "--member-col", path)
    if not pd.api.types.is_numeric_dtype(raw_scores) or pd.api.types.is_bool_dtype(raw_scores):
        bad = [v for v in raw_scores.unique()[:MAX_IDS_SHOWN] if not _is_number(v)]
        raise ValidationError(
            f"{path.name}: score column {score_col!r} is not numeric (dtype {raw_scores.dtype}); "
            f"e.g. {bad[:3]}"
        )
    scores = check_array(raw_scores.to_numpy(), f"column {score_col!r}", ndim=1, finite=False)
    is_member = check_membership(raw_member.to_numpy(), f"column {member_col!r}")
    check_both_classes(is_member, f"column {member_col!r}")
    ids = None
    if id_col is not None:
        ids = _column(df, id_col, "id", "--id-col", path).to_numpy()
        dup = pd.Series(ids).duplicated()
        if dup.any():
            examples = pd.Series(ids)[dup].unique()[:MAX_IDS_SHOWN].tolist()
            raise ValidationError(
                f"{path.name}: id column {id_col!r} has {int(dup.sum())} duplicate ids, "
                f"e.g. {examples}"
            )
    return ScoreFile(path=path, scores=scores, is_member=is_member, record_ids=ids)


def _is_number(v: object) -> bool:
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def parse_fprs(values: Sequence[str] | None, option: str = "--fpr") -> tuple[float, ...]:
    """Target FPRs from repeated and/or comma-separated option values.

    ``"0.01,0.001"`` and ``"0.1%"`` (a percentage) are accepted. ``None`` or empty gives
    :data:`miaudit.metrics.DEFAULT_FPRS`.
    """
    if not values:
        return DEFAULT_FPRS
    out = []
    for value in values:
        for part in str(value).split(","):
            text = part.strip()
            if not text:
                continue
            scale = 100.0 if text.endswith("%") else 1.0
            try:
                number = float(text.rstrip("%")) / scale
            except ValueError:
                raise ValidationError(f"{option}: could not read {text!r} as a number") from None
            out.append(check_probability(number, f"{option} {text}"))
    if not out:
        raise ValidationError(f"{option}: no FPR given")
    return tuple(out)


def write_json(obj: dict[str, Any], path: Path) -> Path:
    """Write strict JSON (no NaN/Infinity literals), indented, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _nan_note(sf: ScoreFile) -> str | None:
    nan = np.isnan(sf.scores)
    if not nan.any():
        return None
    note = (
        f"{int(nan.sum())} NaN scores ({int((nan & sf.is_member).sum())} members) are treated "
        "as the lowest score"
    )
    if sf.record_ids is not None:
        ids = ", ".join(str(i) for i in sf.record_ids[nan][:MAX_IDS_SHOWN])
        more = ", ..." if nan.sum() > MAX_IDS_SHOWN else ""
        note += f"; record ids: {ids}{more}"
    return note


# --------------------------------------------------------------------------------- commands
def _version_callback(value: bool) -> None:
    if value:
        console.print(f"miaudit {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Membership inference attacks and privacy audits. Higher score = member, always."""


@app.command()
@cli_errors
def evaluate(
    file: Annotated[
        Path, typer.Argument(help="CSV/TSV or Parquet file with a score and a membership column.")
    ],
    score_col: Annotated[str, typer.Option(help="Score column (higher = member).")] = "score",
    member_col: Annotated[
        str, typer.Option(help="Membership column (boolean or 0/1).")
    ] = "is_member",
    id_col: Annotated[str | None, typer.Option(help="Record id column (optional).")] = None,
    fpr: Annotated[
        list[str] | None,
        typer.Option(
            help="Target FPR; repeat or comma-separate, '%' allowed "
            "(default 0.01,0.001,0.0001,0.00001)."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder for metrics.json and roc.png.")
    ] = Path("miaudit-evaluate"),
    alpha: Annotated[
        float, typer.Option(help="Significance level of intervals and the ε bound.")
    ] = DEFAULT_ALPHA,
    delta: Annotated[float, typer.Option(help="δ of the ε lower bound.")] = DEFAULT_DELTA,
    n_bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples of the AUC interval.")
    ] = DEFAULT_N_BOOTSTRAP,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Compute the metrics of per-record scores; write metrics.json, roc.png, report.html."""
    from miaudit.audit.result import build_result
    from miaudit.report.console import metrics_table

    fprs = parse_fprs(fpr)
    sf = load_score_file(file, score_col=score_col, member_col=member_col, id_col=id_col)
    ids = sf.record_ids if sf.record_ids is not None else np.arange(sf.scores.size)
    result = build_result(
        {sf.path.stem: sf.scores[None, :]},
        sf.is_member[None, :],
        ids,
        None,
        ["scores"],
        fprs=fprs,
        alpha=alpha,
        delta=delta,
        n_bootstrap=n_bootstrap,
        seed=seed,
        attacks={sf.path.stem: {"name": "scores", "title": f"scores from {sf.path.name}"}},
    )
    result.config = {
        "mode": "scores",
        "input": str(sf.path),
        "score_col": score_col,
        "member_col": member_col,
        "seed": seed,
    }
    summary = result.metrics[sf.path.stem]
    metrics_path = write_json({"input": sf.path.name, **summary.to_dict()}, out / "metrics.json")
    report_path = result.to_html(out / "report.html")
    roc_path = out / "roc.png"
    if quiet:
        return
    console.print(metrics_table({sf.path.stem: summary}, name_header="scores"))
    console.print(
        f"{summary.n_members} members, {summary.n_non_members} non-members", highlight=False
    )
    note = _nan_note(sf)
    if note:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    console.print(
        f"wrote {metrics_path}, {roc_path} and {report_path}", highlight=False, soft_wrap=True
    )


def _print_result(result: Any, quiet: bool) -> None:
    """The metrics table, the headline and where the report is."""
    from miaudit.report.console import metrics_table

    if quiet:
        return
    console.print(metrics_table(result.metrics, layout="rows"))
    console.print(f"[bold]{escape(result.headline)}[/bold]")
    report = result.output_dir / "report.html" if result.output_dir else None
    total = sum(result.timings.values())
    console.print(f"report: {report}  ({total:.1f} s)", highlight=False, soft_wrap=True)


@app.command()
@cli_errors
def run(
    config: Annotated[Path, typer.Argument(help="Audit configuration (YAML).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (overrides the config).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Run the audit described by a YAML config: train, attack, report."""
    from miaudit.audit.pipeline import Audit
    from miaudit.config import load_config

    cfg = load_config(config)
    updates: dict[str, Any] = {"quiet": cfg.quiet or quiet}
    if out is not None:
        updates["output"] = out
    result = Audit(cfg.model_copy(update=updates)).run()
    _print_result(result, quiet)


@app.command()
@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("miaudit-demo"),
    references: Annotated[
        int, typer.Option(help="Reference models (the target is one more).", min=3)
    ] = 16,
    epochs: Annotated[int, typer.Option(help="Training epochs of each MLP.", min=1)] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the whole audit.")] = 0,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the demo's YAML config and exit.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Audit an MLP on the bundled digits data (no download, about 10 s on 2 cores)."""
    from miaudit.audit.pipeline import Audit
    from miaudit.demo import demo_config

    cfg = demo_config(out, n_references=references, epochs=epochs, seed=seed, quiet=quiet)
    if print_config:
        console.print(cfg.to_yaml(), highlight=False, markup=False)
        return
    if not quiet:
        console.print(
            f"Training {references + 1} MLPs on digits and running "
            f"{', '.join(a.display for a in cfg.attacks)} ...",
            highlight=False,
        )
    _print_result(Audit(cfg).run(), quiet)


@app.command()
@cli_errors
def attacks() -> None:
    """List the registered attacks: name, what it does, what it needs."""
    from miaudit import attacks as registry

    infos = registry.infos()
    width = max((len(i.name) for i in infos), default=0)
    for info in infos:
        needs = [
            label
            for flag, label in (
                (info.needs_references, "references"),
                (info.needs_in_references, "IN references"),
                (info.needs_out_references, "OUT references"),
                (info.needs_population, "population"),
            )
            if flag
        ]
        console.print(
            f"[bold]{info.name:<{width}}[/bold]  {escape(info.title)}  "
            f"[dim]needs: {', '.join(needs) or 'target model only'}[/dim]",
            highlight=False,
            soft_wrap=True,
        )
