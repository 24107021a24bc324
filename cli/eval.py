"""`rag eval`: score a question set for faithfulness, relevance, retrieval quality and refusals.

Registered in cli/main.py as the group ``rag eval``: ``rag eval DATASET`` (or ``--spec FILE``)
scores, ``rag eval compare RUN_A RUN_B`` compares runs (cli/eval_compare.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.progress import TextColumn
from rich.table import Table
from typer.core import TyperGroup

from cli.console import console, fail, out, progress, run, settings
from cli.eval_compare import compare_command
from cli.options import CollectionOpt
from rag.config import Settings
from rag.errors import RagError

EXIT_THRESHOLD_FAILED = 2
JUDGES = ("auto", "support", "ensemble", "llm")


def eval_command(
    dataset: Annotated[
        Path | None,
        typer.Argument(
            help="JSONL or CSV with 'question' and optionally 'reference', 'answerable', 'answer', "
            "'contexts' (in CSV a JSON list); RAGAS's column names (user_input, response, "
            "retrieved_contexts, reference) work too. Rows with an answer are scored as given; rows "
            "without one are answered by the pipeline (loads the generator). With --synthesize, the "
            "file to write. Not needed with --spec."
        ),
    ] = None,
    spec: Annotated[
        list[Path] | None,
        typer.Option(
            "--spec",
            "-s",
            help="A YAML run spec (dataset + pipeline settings + judge + metrics + perturbations + "
            "seed; see eval/spec.py), repeatable: each run goes to --out/NAME with its spec and "
            "versions, and two or more runs are compared in --out/compare.html.",
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder: results.json, results.csv, report.html.")
    ] = Path("eval-out"),
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            "-i",
            help="Index directory; needed for rows without contexts or answers, and --synthesize.",
        ),
    ] = None,
    collection: CollectionOpt = None,
    judge: Annotated[
        str,
        typer.Option(
            "--judge",
            help="'auto' (default): 'ensemble' when the pipeline answers the rows with a local model "
            "(loaded anyway), else 'support'. 'support': lexical + embedding, deterministic, no LLM, "
            "seconds. 'ensemble': the support judge and the generator's P(yes) on the evidence "
            "sentences, one calibrated probability (~3 s per statement on 2 CPU cores). 'llm': the "
            "generator alone reads every context; also enables RAGAS-style answer relevance.",
        ),
    ] = "auto",
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Score only the first N rows.")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="A previous results.json to compare with in the report.")
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under",
            help="METRIC=VALUE, repeatable: exit with status 2 when the metric's mean is below VALUE "
            "(e.g. --fail-under faithfulness=0.8).",
        ),
    ] = None,
    synthesize: Annotated[
        int | None,
        typer.Option(
            "--synthesize",
            min=1,
            help="Write N template questions with references from indexed chunks to DATASET, then stop.",
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Ignore partial results in --out and score everything again.")
    ] = False,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=0,
            help="torch threads (0: torch's default). 1 is much faster on a machine busy with other work.",
        ),
    ] = 0,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file (default: configs/default.yaml).")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Score on this Ray cluster (auto, HOST:PORT or ray://HOST:10001; default: cluster.address, "
            "else in this process): cluster.workers actors, each loading the models once. Same results "
            "as a local run for deterministic judges; resumable the same way. Needs `pip install "
            "'rag-service[ray]'` and the index on a path every node can read.",
        ),
    ] = None,
) -> None:
    """Score answers for faithfulness, relevance, retrieval and refusals (resumable: see --out)."""
    thresholds = run(lambda: parse_thresholds(fail_under or []))
    if judge not in JUDGES:
        fail(f"--judge {judge!r} is unknown; use one of {', '.join(JUDGES)}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if spec:
        if dataset is not None:
            fail("give either DATASET or --spec FILE (a spec names its own data set), not both")
        _run_specs(spec, out_dir, config, collection, index, fresh, thresholds, ray_address)
        return
    if dataset is None:
        fail("give a DATASET file (JSONL or CSV) or one or more --spec FILE; see `rag eval --help`")
    cfg = settings(config, collection, index_dir=str(index) if index else None)
    if synthesize:
        run(lambda: _synthesize(cfg, index or (cfg.index_dir if collection else None), dataset, synthesize))
        return
    use_index = index is not None or collection is not None
    address = ray_address or cfg.cluster.address
    results = run(
        lambda: run_eval(cfg, dataset, out_dir, judge, use_index, limit, baseline, fresh, ray_address=address)
    )
    print_summary(results)
    _exit_on(check_thresholds(results["aggregates"], thresholds))


def _run_specs(
    files: list[Path],
    out_dir: Path,
    config: Path | None,
    collection: str | None,
    index: Path | None,
    fresh: bool,
    thresholds: dict[str, float],
    ray_address: str | None = None,
) -> None:
    """Each spec into out_dir/NAME; then, with two or more, the comparison against the first."""
    from eval.spec import load_spec, write_spec_files

    specs = [run(lambda f=f: load_spec(f)) for f in files]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        fail(f"two specs share a run name ({', '.join(names)}); set `name:` in each spec")
    failures, folders = [], []
    for s in specs:
        index_dir = s.index or index
        cfg = settings(
            s.config or config,
            s.collection or collection,
            **{"index_dir": str(index_dir) if index_dir else None, **s.overrides()},
        )
        use_index = index_dir is not None or (s.collection or collection) is not None
        folder = out_dir / s.name
        console.print(f"[bold]run {s.name}[/]: {s.dataset} -> {folder}")
        results = run(
            lambda s=s, cfg=cfg, folder=folder, use_index=use_index: run_eval(
                cfg,
                s.dataset,
                folder,
                s.judge,
                use_index,
                s.limit,
                None,
                fresh,
                metrics=s.metrics,
                perturbations=s.perturbations,
                seed=s.seed,
                ray_address=ray_address or cfg.cluster.address,
            )
        )
        write_spec_files(folder, s, cfg.index_dir if use_index else None)
        print_summary(results)
        failures += [f"{s.name}: {f}" for f in check_thresholds(results["aggregates"], thresholds)]
        folders.append(folder)
    if len(folders) > 1:
        from cli.eval_compare import compare_and_report

        compare_and_report(folders, out_dir / "compare", None)
    _exit_on(failures)


def _exit_on(failures: list[str]) -> None:
    for f in failures:
        console.print(f"[bold red]threshold failed:[/] {f}")
    if failures:
        raise typer.Exit(EXIT_THRESHOLD_FAILED)


def parse_thresholds(items: list[str]) -> dict[str, float]:
    from eval.runner import METRICS

    thresholds = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in METRICS:
            raise RagError(f"--fail-under {item!r}: use METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
        try:
            thresholds[name] = float(value)
        except ValueError:
            raise RagError(f"--fail-under {item!r}: {value!r} is not a number") from None
    return thresholds


def check_thresholds(aggregates: dict, thresholds: dict[str, float]) -> list[str]:
    failures = []
    for name, minimum in thresholds.items():
        if name not in aggregates["metrics"]:
            failures.append(f"{name} is not among this run's metrics (minimum {minimum})")
            continue
        mean = aggregates["metrics"][name]["mean"]
        if mean is None:
            failures.append(f"{name} has no scored samples (minimum {minimum})")
        elif mean < minimum:
            failures.append(f"{name} = {mean:.3f} is below {minimum}")
    return failures


def run_eval(
    settings: Settings,
    dataset: Path,
    out_dir: Path,
    judge_name: str,
    use_index: bool,
    limit: int | None,
    baseline: Path | None,
    fresh: bool = False,
    metrics: list[str] | None = None,
    perturbations: list[str] | None = None,
    seed: int = 0,
    ray_address: str | None = None,
) -> dict[str, Any]:
    from eval.dataset import load_dataset
    from eval.report import build_results, write_outputs
    from eval.robustness import expand
    from eval.runner import METRICS, PARTIAL, aggregate, build_evaluator, fingerprint, needs, resolve_judge

    samples = load_dataset(dataset, limit)
    if perturbations:
        samples = expand(samples, perturbations, seed)
    base = _load_baseline(baseline) if baseline else None
    need_retrieval, need_generation = needs(samples)
    judge_name = resolve_judge(judge_name, settings, need_generation)
    if need_retrieval and not use_index:
        raise RagError(
            f"{dataset}: some rows have no {'answer' if need_generation else 'contexts'}; "
            "pass --index DIR so the "
            "pipeline can retrieve (and generate) them"
        )
    if fresh and (out_dir / PARTIAL).exists():
        (out_dir / PARTIAL).unlink()
    generator_name = None
    with progress(TextColumn("[bold]scoring"), TextColumn("{task.fields[note]}"), remaining=True) as bar:
        task = bar.add_task("eval", total=len(samples), note="")
        resumed = 0

        def on_progress(done: int, total: int, cached: bool) -> None:
            nonlocal resumed
            resumed += cached
            bar.update(task, completed=done, note=f"({resumed} resumed)" if resumed else "")

        if ray_address:
            from eval.distributed import run_on_cluster

            records = run_on_cluster(
                settings,
                samples,
                out_dir,
                judge_name,
                need_retrieval,
                need_generation,
                ray_address,
                on_progress,
            )
        else:
            evaluator, generator = build_evaluator(settings, judge_name, need_retrieval, need_generation)
            generator_name = getattr(generator, "name", None)
            records = evaluator.run(samples, out_dir, on_progress)
    config = {
        "dataset": str(dataset),
        "index": str(settings.index_dir) if use_index else None,
        "judge": judge_name,
        "limit": limit,
        "fingerprint": fingerprint(settings, judge_name),
        "embedding_model": settings.embedding.model,
        "generator": generator_name or (settings.generator.model if need_generation else None),
        "ray": ray_address,
        "grounding": settings.grounding.model_dump(),
        "retrieval": settings.retrieval.model_dump(),
        "metrics": list(metrics or METRICS),
        "perturbations": list(perturbations or []),
        "seed": seed,
    }
    results = build_results(records, aggregate(records, metrics or METRICS, settings.metrics), config, base)
    paths = write_outputs(out_dir, results)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    return results


def _load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RagError(f"--baseline {path}: cannot read a results.json ({exc})") from None
    if "aggregates" not in data:
        raise RagError(f"--baseline {path}: not a results.json written by `rag eval` (no 'aggregates')")
    data["_path"] = str(path)
    return data


def _synthesize(settings: Settings, index: Path | None, dataset: Path, n: int) -> None:
    from eval.dataset import synthesize, write_jsonl
    from rag.index.reader import IndexReader

    if index is None:
        raise RagError("--synthesize needs --index DIR: questions are made from the indexed chunks")
    if dataset.exists():
        raise RagError(f"{dataset} exists; --synthesize writes a new data set there, pick another name")
    reader = IndexReader.open(settings.index_dir)
    try:
        rows = reader.chunk_texts()
    finally:
        reader.close()
    samples = synthesize(rows, n)
    write_jsonl(samples, dataset)
    console.print(
        f"wrote {len(samples)} synthetic questions to {dataset}; score them with "
        f"`rag eval {dataset} --index {index} --out eval-out`"
    )


def print_summary(results: dict) -> None:
    from eval.report import LABELS

    agg = results["aggregates"]
    table = Table(
        title=f"{agg['n_samples']} samples, {agg['n_refused']} refused, {agg['n_errors']} with errors"
    )
    for col in ("metric", "mean", "95 % CI", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m, a in agg["metrics"].items():
        if a["n"]:
            table.add_row(LABELS[m], f"{a['mean']:.3f}", f"{a['ci_low']:.3f}-{a['ci_high']:.3f}", str(a["n"]))
    out.print(table)


class _ScoreByDefault(TyperGroup):
    """``rag eval DATASET ...`` means ``rag eval run DATASET ...``: scoring is what people type,
    and the form it had before ``compare`` existed keeps working."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ScoreByDefault,
    no_args_is_help=True,
    help="Evaluate: `rag eval DATASET` or `rag eval --spec A.yaml --spec B.yaml` scores (the `run` "
    "command), `rag eval compare RUN_A RUN_B` compares runs.",
)
app.command("run")(eval_command)
app.command("compare")(compare_command)
