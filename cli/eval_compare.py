"""`rag eval compare RUN_A RUN_B [...]`: paired differences per metric against the first run, with
bootstrap confidence intervals, per-question wins and losses and HELM's mean win rate; a CI gate
with --fail-under and --fail-on-regression."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.console import console, fail, out, run

EXIT_GATE_FAILED = 2


def compare_command(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders written by `rag eval --out DIR` (or their results.json); the first is the "
            "baseline the others are compared with."
        ),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write compare.json and compare.html here (default: no files)."),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", "-m", help="Compare only this metric (repeatable; default: every scored one)."
        ),
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under",
            help="METRIC=VALUE, repeatable: exit 2 when a compared run's (not the baseline's) mean is below.",
        ),
    ] = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option(
            "--fail-on-regression",
            help="Exit 2 when a run is significantly worse than the baseline on any compared metric.",
        ),
    ] = False,
) -> None:
    """Compare evaluation runs question by question (the first run is the baseline)."""
    from cli.eval import check_thresholds, parse_thresholds
    from eval.compare import regressions

    thresholds = run(lambda: parse_thresholds(fail_under or []))
    result, loaded = run(lambda: compare_and_report(runs, out_dir, metric))
    failures = regressions(result) if fail_on_regression else []
    for data, name in zip(loaded[1:], result["runs"][1:], strict=True):
        failures += [f"{name}: {f}" for f in check_thresholds(data["aggregates"], thresholds)]
    for f in failures:
        console.print(f"[bold red]gate failed:[/] {f}")
    if failures:
        raise typer.Exit(EXIT_GATE_FAILED)


def compare_and_report(
    runs: list[Path], out_dir: Path | None, metrics: list[str] | None
) -> tuple[dict, list]:
    """Load, compare, print; write compare.json/html when out_dir is given."""
    from eval.compare import compare_runs, load_run
    from eval.report import write_comparison
    from eval.runner import METRICS

    loaded = [load_run(Path(r)) for r in runs]
    unknown = [m for m in metrics or [] if m not in METRICS]
    if unknown:
        fail(f"--metric {unknown[0]!r} is unknown; use one of {', '.join(METRICS)}")
    chosen = metrics or [
        m for m in METRICS if any((d["aggregates"]["metrics"].get(m) or {}).get("n") for d in loaded)
    ]
    result = compare_runs(loaded, chosen)
    print_comparison(result)
    if out_dir is not None:
        paths = write_comparison(out_dir, result)
        console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    return result, loaded


def print_comparison(result: dict) -> None:
    from eval.report import LABELS

    for c in result["comparisons"]:
        table = Table(title=f"{c['run']} against {c['baseline']} (paired, 95 % bootstrap CI)")
        for col in ("metric", "n", c["baseline"], c["run"], "difference", "95 % CI", "significant", "W/L/T"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for m, v in c["metrics"].items():
            if not v["n"]:
                continue
            style = "" if not v["significant"] else ("green" if v["delta"] > 0 else "red")
            table.add_row(
                LABELS[m],
                str(v["n"]),
                f"{v['mean_a']:.3f}",
                f"{v['mean_b']:.3f}",
                f"[{style}]{v['delta']:+.3f}[/]" if style else f"{v['delta']:+.3f}",
                f"{v['ci_low']:+.3f} to {v['ci_high']:+.3f}",
                "yes" if v["significant"] else "no",
                f"{v['wins']}/{v['losses']}/{v['ties']}",
            )
        out.print(table)
    rates = ", ".join(f"{r} {w:.2f}" if w is not None else f"{r} -" for r, w in result["win_rate"].items())
    out.print(f"mean win rate: {rates}")
