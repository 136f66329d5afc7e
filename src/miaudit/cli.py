"""The ``miaudit`` command.

Each command is one function decorated with ``@app.command()`` and ``@cli_errors``; shared
helpers live in their modules (:mod:`miaudit.scorefile` reads score files and FPR lists,
:mod:`miaudit.report.console` prints tables, :mod:`miaudit._json` writes JSON) and are imported
inside the commands, so that ``miaudit --help`` and ``miaudit attacks`` start without numpy's
heavier neighbours, pandas, scipy or torch. Errors that miaudit raises on purpose
(:class:`~miaudit.exceptions.MiauditError`) are printed as one red line on stderr and exit with
status 2, without a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape

from miaudit import __version__
from miaudit.defaults import DEFAULT_ALPHA, DEFAULT_DELTA, DEFAULT_FPRS, DEFAULT_N_BOOTSTRAP
from miaudit.exceptions import MiauditError

__all__ = ["EXIT_ERROR", "app", "cli_errors"]

#: Names of :mod:`miaudit.scorefile` that this module re-exports, imported on first use.
_SCOREFILE_NAMES = ("ScoreFile", "load_score_file", "parse_fprs")


def __getattr__(name: str) -> Any:
    if name in _SCOREFILE_NAMES:
        from miaudit import scorefile

        return getattr(scorefile, name)
    raise AttributeError(f"module 'miaudit.cli' has no attribute {name!r}")

#: Exit status of a command that failed on bad input (as for usage errors).
EXIT_ERROR = 2


def _hide_flag_types() -> None:
    """Typer 0.29 prints ``<bool>`` beside every flag in ``--help``, as if it took a value;
    a flag (``--quiet``) takes none, so its type column is left empty (earlier typers have no
    such column: nothing to do)."""
    core = typer.core.TyperOption
    original = getattr(core, "display_type_rich", None)
    if original is None or getattr(original, "_miaudit_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich._miaudit_flags = True  # type: ignore[attr-defined]
    core.display_type_rich = display_type_rich  # type: ignore[attr-defined]


_hide_flag_types()

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
EpsilonChoice = Literal["split", "best_on_same_data"]


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
    lower_is_member: Annotated[
        bool,
        typer.Option(
            "--lower-is-member",
            help="The score column is lower = member (a loss, a distance): negate it.",
        ),
    ] = False,
    fpr: Annotated[
        list[str] | None,
        typer.Option(
            help="Target FPR; repeat or comma-separate, '%' allowed "
            f"(default {','.join(f'{f:g}' for f in DEFAULT_FPRS)})."
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
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the ε split.")] = 0,
    epsilon_selection: Annotated[
        str,
        typer.Option(
            help="ε bound's threshold: 'split' (chosen on half the records, valid) or "
            "'best_on_same_data' (optimistic)."
        ),
    ] = "split",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Compute the metrics of per-record scores; write metrics.json, roc.png, report.html."""
    import numpy as np

    from miaudit._json import write_json
    from miaudit.audit.result import build_result
    from miaudit.report.console import checks_markup, metrics_table
    from miaudit.scorefile import load_score_file, parse_fprs

    fprs = parse_fprs(fpr)
    sf = load_score_file(
        file,
        score_col=score_col,
        member_col=member_col,
        id_col=id_col,
        lower_is_member=lower_is_member,
    )
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
        epsilon_selection=cast(EpsilonChoice, epsilon_selection),  # summarize checks the value
        attacks={sf.path.stem: {"name": "scores", "title": f"scores from {sf.path.name}"}},
    )
    result.config = {
        "mode": "scores",
        "input": str(sf.path),
        "score_col": score_col,
        "member_col": member_col,
        "lower_is_member": lower_is_member,
        "seed": seed,
    }
    summary = result.metrics[sf.path.stem]
    metrics_path = write_json(
        {
            "input": sf.path.name,
            "headline": result.headline,
            "reliable_verdict": result.reliable,
            "checks": [c.to_dict() for c in result.checks],
            "lower_is_member": lower_is_member,
            "ignored_columns": list(sf.dropped_columns),
            **summary.to_dict(),
        },
        out / "metrics.json",
    )
    report_path = result.to_html(out / "report.html")
    roc_path = out / "roc.png"
    if quiet:
        return
    console.print(metrics_table({sf.path.stem: summary}, name_header="scores"))
    console.print(
        f"{summary.n_members} members, {summary.n_non_members} non-members", highlight=False
    )
    for note in sf.notes():
        console.print(f"[yellow]{escape(note)}[/yellow]", soft_wrap=True)
    for line in checks_markup(result.checks):
        console.print(line, highlight=False, soft_wrap=True)
    if not result.reliable:
        console.print(f"[bold red]{escape(result.headline)}[/bold red]", soft_wrap=True)
    console.print(
        f"wrote {metrics_path}, {roc_path} and {report_path}", highlight=False, soft_wrap=True
    )


def _print_result(result: Any, quiet: bool) -> None:
    """The metrics table, the sanity checks, the headline and where the report is."""
    from miaudit.report.console import checks_markup, metrics_table

    if quiet:
        return
    console.print(metrics_table(result.metrics, layout="rows"))
    for line in checks_markup(result.checks):
        console.print(line, highlight=False, soft_wrap=True)
    style = "bold red" if not result.reliable else "bold"
    console.print(f"[{style}]{escape(result.headline)}[/{style}]", soft_wrap=True)
    claim = result.privacy_claim() if hasattr(result, "privacy_claim") else None
    if claim is not None:
        console.print(f"Differential privacy: {escape(claim['sentence'])}.", highlight=False)
    canaries = getattr(result, "canary_audit", None)
    if canaries:
        console.print(f"Canary audit: {escape(canaries['sentence'])}.", highlight=False)
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
    trust_code: Annotated[
        bool,
        typer.Option(
            "--trust-code",
            help="Allow the config to import and run the Python code it names (callable "
            "recipes and targets, module:Class attacks); see docs/security.md.",
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="If another run is writing to the output folder, wait."),
    ] = False,
) -> None:
    """Run the audit described by a YAML config: train, attack, report."""
    from miaudit.audit.pipeline import Audit
    from miaudit.config import load_config

    cfg = load_config(config, trust_code=trust_code)
    updates: dict[str, Any] = {"quiet": cfg.quiet or quiet}
    if out is not None:
        updates["output"] = out
    result = Audit(cfg.model_copy(update=updates)).run(wait=wait)
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
    llm: Annotated[
        bool,
        typer.Option(
            "--llm",
            help="Audit a tiny GPT-2 trained here on Python's own docs and canaries instead "
            "(about 2 min on 2 cores; needs miaudit[llm]).",
        ),
    ] = False,
) -> None:
    """Audit an MLP on the bundled digits data (no download, about 25 s on 2 cores)."""
    from miaudit.audit.pipeline import Audit
    from miaudit.demo import demo_config

    if llm:
        from miaudit.llm.demo import run_llm_demo

        if not quiet:
            console.print(
                "Training a tiny GPT-2 on Python's docs and canaries, then running the LLM "
                "attacks and the blind baseline ...",
                highlight=False,
            )
        result = run_llm_demo(out, quiet=True if quiet else None, seed=seed)
        _print_result(result, quiet)
        if not quiet:
            llm_findings = result.config["llm"]
            shifted = llm_findings["shifted_split"].get("message", "")
            masked = llm_findings["masked_lm"]["headline"]
            for title, folder, text in (
                ("Shifted split", out / "shifted", shifted),
                ("Masked LM", out / "masked", masked),
            ):
                console.print(
                    f"{title} ({escape(str(folder))}): {escape(text)}",
                    highlight=False,
                    soft_wrap=True,
                )
        return
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
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders (the first is the baseline).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder for compare.html/.json.")
    ] = Path("miaudit-compare"),
    attack: Annotated[
        str | None, typer.Option(help="Attack to compare (default: each run's best).")
    ] = None,
    fpr: Annotated[
        str | None, typer.Option(help="FPR of the significance test (default: headline).")
    ] = None,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the test.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Compare audit runs: ROC curves, metrics with intervals, a significance test."""
    from miaudit.report.compare import compare_runs
    from miaudit.scorefile import parse_fprs

    test_fpr = parse_fprs([fpr])[0] if fpr else None
    res = compare_runs(
        list(runs), out, attack=attack, fpr=test_fpr, n_bootstrap=n_bootstrap, seed=seed
    )
    if quiet:
        return
    for run in res["runs"]:
        row = next((r for r in run["tpr_at_fpr"] if r["target_fpr"] == res["fpr"]), None)
        tpr = f"{100 * row['tpr']:.2f}%" if row else "–"
        acc = " ".join(
            f"{k} {run[k]:.3f}" for k in ("train_accuracy", "test_accuracy") if run[k] is not None
        )
        console.print(
            f"[bold]{escape(run['name'])}[/bold] ({escape(run['attack'])}): AUC {run['auc']:.4f}, "
            f"TPR {tpr} at FPR {res['fpr']:g}; {acc}",
            highlight=False,
            soft_wrap=True,
        )
    for name, t in res["tests"].items():
        verdict = "significant" if t["significant"] else "not significant"
        console.print(
            f"{escape(name)} vs {escape(res['baseline'])}: ΔTPR {100 * t['difference']:+.2f} pts "
            f"[{100 * t['interval_low']:+.2f}, {100 * t['interval_high']:+.2f}], "
            f"p = {t['p_value']:.3g} ({verdict})",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"wrote {res['files']['html']}", highlight=False, soft_wrap=True)


@app.command()
@cli_errors
def attacks(
    name: Annotated[
        str | None,
        typer.Argument(help="Show one attack: parameters, threat model, paper and formula."),
    ] = None,
) -> None:
    """List the registered attacks (name, what it does, what it needs), or describe one."""
    # The listing is read from the attacks' source, without importing them (or numpy).
    from miaudit.attacks._catalog import attack_listing

    if name is not None:
        _describe_attack(name)
        return
    infos = attack_listing()
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


#: The DP audits of ``miaudit audit-dp``.
DP_METHODS = ("one-run", "canary", "gdp")


@app.command("audit-dp")
@cli_errors
def audit_dp(
    file: Annotated[
        Path,
        typer.Argument(help="CSV/TSV or Parquet: one row per canary trial, a score and IN/OUT."),
    ],
    method: Annotated[
        str,
        typer.Option(
            help="one-run (Steinke et al. 2023: one model, canaries with fair coins), canary "
            "(Jagielski et al. 2020: many runs, Clopper-Pearson) or gdp (Nasr et al. 2023)."
        ),
    ] = "one-run",
    score_col: Annotated[str, typer.Option(help="Score column (higher = IN).")] = "score",
    member_col: Annotated[str, typer.Option(help="IN/OUT column (boolean or 0/1).")] = "is_member",
    delta: Annotated[float, typer.Option(help="δ of the bound.")] = DEFAULT_DELTA,
    alpha: Annotated[
        float, typer.Option(help="Significance: the bound holds with probability 1 - alpha.")
    ] = DEFAULT_ALPHA,
    claimed: Annotated[
        float | None, typer.Option(help="The ε the training claims (printed beside the bound).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split / tie-breaking.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the result as JSON here.")
    ] = None,
) -> None:
    """Empirical lower bound on a training run's DP ε from canary scores."""
    from dataclasses import asdict

    from miaudit._json import write_json
    from miaudit.audit import dp
    from miaudit.exceptions import ValidationError
    from miaudit.scorefile import load_score_file

    if method not in DP_METHODS:
        raise ValidationError(f"--method: expected one of {', '.join(DP_METHODS)}, got {method!r}")
    sf = load_score_file(file, score_col=score_col, member_col=member_col)
    found: Any
    if method == "one-run":
        found = dp.one_run_audit(sf.scores, sf.is_member, delta=delta, p=alpha, rng=seed)
    elif method == "canary":
        found = dp.canary_audit(sf.scores[sf.is_member], sf.scores[~sf.is_member], delta=delta,
                                alpha=alpha, rng=seed)
    else:
        found = dp.gdp_audit(sf.scores[sf.is_member], sf.scores[~sf.is_member], delta=delta,
                             alpha=alpha, rng=seed)
    sentence = (
        f"the audit proves ε ≥ {found.epsilon:.3f} (δ = {delta:g}) at "
        f"{100 * (1 - alpha):g}% confidence ({method}, {sf.scores.size} trials)"
    )
    if claimed is not None:
        sentence = f"claimed ε = {claimed:g}; " + sentence
    console.print(sentence, highlight=False)
    if out is not None:
        write_json({"method": method, "sentence": sentence, **asdict(found)}, out)


def _key_values(pairs: list[str], option: str) -> dict[str, Any]:
    """``["k=v", ...]`` as a dict, each value read as a YAML scalar (``1e-3``, ``true``)."""
    import yaml

    from miaudit.exceptions import ValidationError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"{option}: expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


@app.command("unlearning")
@cli_errors
def unlearning(
    data: Annotated[
        str,
        typer.Option(help="A built-in dataset name, or a data file (CSV/TSV/Parquet/NPZ)."),
    ] = "digits",
    label_col: Annotated[
        str | None, typer.Option(help="Label column of a data file.")
    ] = None,
    estimator: Annotated[
        str,
        typer.Option(help="scikit-learn classifier: a short name (SGDClassifier) or import path."),
    ] = "SGDClassifier",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Estimator parameter KEY=VALUE (repeatable)."),
    ] = None,
    unlearner: Annotated[
        str,
        typer.Option(
            help="retrain (exact), finetune (on the retained records), none (worst case), or "
            "package.module:make for your own (with --trust-code)."
        ),
    ] = "finetune",
    models: Annotated[int, typer.Option(help="Training runs of each kind.", min=5)] = 32,
    targets: Annotated[int, typer.Option(help="U-LiRA runs that are classified.", min=2)] = 8,
    forget: Annotated[int, typer.Option(help="Records in the forget set.", min=2)] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the splits and the models.")] = 0,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (unlearning.json).")
    ] = Path("miaudit-unlearning"),
    trust_code: Annotated[
        bool, typer.Option("--trust-code", help="Allow importing the code an option names.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Evaluate a machine-unlearning algorithm: U-LiRA and the NeurIPS 2023 challenge score."""
    from miaudit._json import write_json
    from miaudit.audit.unlearning_eval import evaluate_unlearning
    from miaudit.data import load_dataset, load_file
    from miaudit.train.sklearn_recipe import SklearnConfig
    from miaudit.trust import code_trust

    params = _key_values(param or [], "--param")
    with code_trust(trust_code):
        path = Path(data)
        if path.suffix and path.is_file():
            options = {} if label_col is None else {"label_col": label_col}
            ds = load_file(path, **options)
        else:
            ds = load_dataset(data)
        est = SklearnConfig(estimator=estimator, params=params)
        result = evaluate_unlearning(
            ds.X, ds.y, est.estimator, unlearner, record_ids=ds.record_ids, n_models=models,
            n_targets=targets, n_forget=forget, seed=seed, quiet=True if quiet else None,
        )
    summary = result.to_dict()
    summary["config"] = {
        "data": data, "estimator": estimator, "params": params,
        "unlearner": unlearner, "models": models, "targets": targets, "forget": forget,
        "seed": seed,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(summary, out / "unlearning.json")
    if not quiet:
        console.print(result.verdict(), highlight=False, soft_wrap=True)
        acc = summary["retain_accuracy"], summary["test_accuracy"]
        console.print(
            f"retain accuracy {acc[0]['unlearned']:.3f} unlearned vs {acc[0]['retrained']:.3f} "
            f"retrained; test accuracy {acc[1]['unlearned']:.3f} vs {acc[1]['retrained']:.3f}. "
            f"Written: {out / 'unlearning.json'}",
            highlight=False,
            soft_wrap=True,
        )


def _describe_attack(name: str) -> None:
    """Print an attack's title, paper, threat model, parameters with defaults and formula."""
    import inspect

    from miaudit import attacks as registry

    cls = registry.REGISTRY.get(name)
    info = cls.info
    console.print(f"[bold]{escape(info.name)}[/bold]: {escape(info.title)}", soft_wrap=True)
    console.print(f"paper: {escape(info.paper or '-')}", highlight=False, soft_wrap=True)
    needs = [
        f"{field.removeprefix('needs_').replace('_', ' ')}"
        for field in ("needs_references", "needs_in_references", "needs_out_references",
                      "needs_population", "needs_outputs", "needs_queries")
        if getattr(info, field, False)
    ]
    console.print(
        f"threat model: needs {', '.join(needs) or 'the target model only'}; signals: "
        f"{', '.join(info.signals) or '-'}",
        highlight=False,
        soft_wrap=True,
    )
    params = [
        p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"
    ]
    console.print("parameters:" if params else "parameters: none", highlight=False)
    for p in params:
        default = "" if p.default is inspect.Parameter.empty else f" = {p.default!r}"
        console.print(f"  {escape(p.name)}{escape(default)}", highlight=False)
    module = inspect.getmodule(cls)
    doc = inspect.getdoc(cls) or ""
    if module is not None and module.__doc__:
        doc = f"{doc}\n\n{inspect.cleandoc(module.__doc__)}" if doc else module.__doc__
    if doc:
        console.print("formula and details:", highlight=False)
        console.print(escape(doc.strip()), highlight=False, markup=True, soft_wrap=True)


if __name__ == "__main__":  # python -m miaudit.cli
    app()
