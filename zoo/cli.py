"""The ``zoo`` command line: ``zoo list``, ``zoo info NAME``, ``zoo demo``.

Listing reads cards only, so it never imports torch and answers quickly.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Optional

import typer

app = typer.Typer(help="modalzoo: multimodal models by name.", no_args_is_help=True, add_completion=False)

DTYPES = ("float32", "float16", "bfloat16")
PACKAGE_LOGGERS = ("zoo", "encoders", "projectors", "tasks")  # the packages modalzoo installs
_STATE = {"quiet": False}  # set by the -q option for commands that pass their own progress switch


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's own last-resort handler),
    so a handler set up by one command never holds on to a stream that has since been swapped or closed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """The package loggers at WARNING (``quiet`` too, which also turns progress bars off), INFO with
    ``verbose=1``, DEBUG with 2 or more; their records go to stderr as ``LEVEL logger: message``."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 and not quiet else logging.WARNING
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in PACKAGE_LOGGERS:
        log = logging.getLogger(name)
        for old in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
            log.removeHandler(old)
        log.addHandler(handler)
        log.setLevel(level)
    _STATE["quiet"] = quiet
    if quiet:  # tqdm >= 4.66 reads TQDM_* defaults from the environment; huggingface_hub has its own switch
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "huggingface_hub" in sys.modules:  # read at import time: tell an already imported hub as well
            sys.modules["huggingface_hub"].utils.disable_progress_bars()


@app.callback()
def _global_options(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="more log lines: -v info, -vv debug"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only warnings and errors, and no progress bars"),
) -> None:
    if verbose and quiet:
        raise typer.BadParameter("give --verbose or --quiet, not both")
    configure_logging(verbose, quiet)


def _weights_dir_option() -> Any:
    return typer.Option(
        None, "--weights-dir", help="a folder holding the card's weight files (checked by sha256), e.g. on a machine "
        "without network"
    )


def _device_option() -> Any:
    return typer.Option(None, "--device", help="where to load the model, e.g. cpu, cuda, cuda:1 (default: cpu)")


def _dtype_option() -> Any:
    return typer.Option(None, "--dtype", help=f"cast the loaded model's floating weights to {', '.join(DTYPES)}")


def _load_options(weights_dir: str | None, device: str | None, dtype: str | None) -> dict[str, Any]:
    """``zoo.load``'s keyword arguments from the shared command-line options (``--dtype`` checked by name)."""
    if dtype is not None and dtype not in DTYPES:
        raise typer.BadParameter(f"--dtype takes one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype is not None:
        import torch

        dtype = getattr(torch, dtype)
    return {"weights_dir": weights_dir, "device": device, "dtype": dtype}


@app.command("list")
def list_cmd(
    pattern: Optional[str] = typer.Argument(None, help="glob filter, e.g. '*gnn*'"),  # noqa: UP045 (typer)
    as_json: bool = typer.Option(False, "--json", help="print a JSON list of names, sources and descriptions"),
) -> None:
    """List the named models: where their files come from (bundled with modalzoo, an installed package, the
    Hugging Face Hub, a URL, or a folder you pass as --weights-dir; '-' for none) and a one-line description."""
    from zoo.cards import card, list_models, source_kinds

    rows = [(name, source_kinds(card(name)), card(name).description) for name in list_models(pattern)]
    if as_json:
        typer.echo(json.dumps([{"name": n, "sources": k, "description": d} for n, k, d in rows], indent=2))
        return
    width = max((len(n) for n, _, _ in rows), default=4)
    kinds_width = max((len(",".join(k)) for _, k, _ in rows), default=1)
    for name, kinds, description in rows:
        typer.echo(f"{name:<{width}}  {','.join(kinds) or '-':<{kinds_width}}  {description}")


@app.command("info")
def info_cmd(
    name: str = typer.Argument(..., help="a model name from `zoo list`, or a transformers checkpoint hf:org/repo[@rev]"),
) -> None:
    """Show a model's card: description, licence, weights, spec and results; for ``hf:`` the family and spec the
    checkpoint's config.json resolves to (only its config, tokenizer and processor files are fetched)."""
    import yaml

    from zoo.cards import card
    from zoo.weights.checkpoint import HF_PREFIX

    if name.startswith(HF_PREFIX):
        _hf_info(name)
        return
    c = card(name)
    typer.echo(f"{c.name}: {c.description}\nlicence: {c.license}\ntasks: {', '.join(c.tasks) or '-'}")
    if c.source:
        typer.echo(f"source: {c.source}")
    for w in c.weights:
        typer.echo(f"weights: {w.file} sha256={w.sha256} ({w.url or w.hf_repo or 'local only'})")
    typer.echo("spec:\n" + yaml.safe_dump(c.spec, sort_keys=False).rstrip())
    for r in c.eval_results:
        typer.echo(f"result: {json.dumps(r)}")


def _hf_info(name: str) -> None:
    """``zoo info hf:REF``: the checkpoint's model_type, family, key map and resolved zoo spec."""
    import yaml

    from zoo.loading import hf_checkpoint_conversion

    _, folder, config, conversion = hf_checkpoint_conversion(name)
    typer.echo(f"{name}: a transformers checkpoint (model_type {config['model_type']!r}) in {folder}")
    typer.echo(f"family: {conversion.family}\nweights: safetensors through key map {conversion.key_map!r}")
    typer.echo("spec:\n" + yaml.safe_dump(conversion.spec, sort_keys=False).rstrip())


def _parse_overrides(pairs: list[str]) -> dict[str, object]:
    import yaml

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes KEY=VALUE (YAML value), got {pair!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _print_tasks() -> None:
    """One line per built-in task, its name and description; reads YAML only, so it never imports torch."""
    from tasks.config import builtin_tasks, load_task

    for name in builtin_tasks():
        typer.echo(f"{name:<26}  {load_task(name).description}")


def _list_tasks(value: bool) -> None:
    """``zoo eval --list-tasks``: print the built-in tasks and stop before the required arguments are asked for."""
    if value:
        _print_tasks()
        raise typer.Exit()


@app.command("eval")
def eval_cmd(
    name: str = typer.Argument(..., help="model: a name from `zoo list`, a directory, hf-hub:org/repo or hf:org/repo"),
    task: str = typer.Option(..., "--task", "-t", help="a built-in task (see --list-tasks) or a task YAML"),
    data: str = typer.Option(..., "--data", "-d", help="data file or folder the task's reader takes"),
    output_dir: str = typer.Option("runs/eval", "--output-dir", "-o", help="where results.json and report.html go"),
    batch_size: int = typer.Option(16, "--batch-size", "-b"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N rows"),  # noqa: UP045 (typer)
    overrides: list[str] = typer.Option([], "--set", help="override a task key, e.g. --set generation.max_new_tokens=8"),
    list_tasks: bool = typer.Option(
        False, "--list-tasks", is_eager=True, callback=_list_tasks, help="list the built-in tasks and exit"
    ),
    weights_dir: Optional[str] = _weights_dir_option(),  # noqa: UP045 (typer)
    device: Optional[str] = _device_option(),  # noqa: UP045 (typer)
    dtype: Optional[str] = _dtype_option(),  # noqa: UP045 (typer)
) -> None:
    """Evaluate a model on a task; failed rows count as wrong and are listed. Formats: docs/formats.md."""
    from zoo.evaluation.distributed import is_main_process, leave_process_group
    from zoo.evaluation.evaluate import evaluate
    from zoo.loading import load

    model = load(name, **_load_options(weights_dir, device, dtype))
    results = evaluate(model, task, data, batch_size=batch_size, limit=limit, output_dir=output_dir,
                       **{"progress": not _STATE["quiet"], **_parse_overrides(overrides)})
    main_process = is_main_process()
    leave_process_group()
    if not main_process:  # under accelerate launch every process holds the results; one prints them
        return
    width = max(len(k) for k in results["metrics"]) if results["metrics"] else 0
    for key, value in results["metrics"].items():
        typer.echo(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    typer.echo(f"{results['num_rows']} rows, {results['num_failed']} failed (counted as wrong)")
    typer.echo(f"wrote {output_dir}/results.json and {output_dir}/report.html")


@app.command("tasks")
def tasks_cmd() -> None:
    """List the built-in evaluation tasks (as `zoo eval --list-tasks` does)."""
    _print_tasks()


def _parse_layer_alphas(pairs: list[str]) -> dict[str, float]:
    layer_alphas = {}
    for pair in pairs:
        pattern, _, ratio = pair.rpartition("=")
        try:
            value = float(ratio) if pattern else None
        except ValueError:
            value = None
        if value is None:
            raise typer.BadParameter(f"--layer-alpha takes PATTERN=RATIO, e.g. 'projectors.*=1.0', got {pair!r}")
        layer_alphas[pattern] = value
    return layer_alphas


@app.command("merge")
def merge_cmd(
    base: str = typer.Argument(..., help="the base model: a name from `zoo list`, a directory, hf-hub:org/repo or hf:org/repo"),
    finetuned: str = typer.Argument(
        ..., help="a fine-tuned copy of BASE (same forms); LoRAMoE layers are folded first where that is exact "
        "(fixed routing), else refused"
    ),
    alpha: Optional[float] = typer.Option(  # noqa: UP045 (typer)
        None, "--alpha", "-a", help="weight of FINETUNED in [0, 1]: 0 = BASE, 1 = FINETUNED (not with --search)"
    ),
    layer_alpha: list[str] = typer.Option(
        [], "--layer-alpha", help="PATTERN=RATIO: another ratio for keys matching the glob; first match wins"
    ),
    output: str = typer.Option(..., "--output", "-o", help="directory to save the merged model to (with --search: "
                               "the run folder; the model goes to its merged/)"),
    search: bool = typer.Option(False, "--search", help="search per-block ratios (HMA): the best --task score whose "
                                "--retain-task score loses at most --max-forgetting against BASE"),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="--search: the fine-tuned (target) task"),  # noqa: UP045 (typer)
    data: Optional[str] = typer.Option(None, "--data", "-d", help="--search: the target task's data"),  # noqa: UP045 (typer)
    metric: Optional[str] = typer.Option(None, "--metric", help="--search: the target metric (higher is better; "  # noqa: UP045 (typer)
                                         "default: the task's first)"),
    retain_task: Optional[str] = typer.Option(None, "--retain-task", help="--search: the task not to forget"),  # noqa: UP045 (typer)
    retain_data: Optional[str] = typer.Option(None, "--retain-data", help="--search: the retain task's data"),  # noqa: UP045 (typer)
    retain_metric: Optional[str] = typer.Option(None, "--retain-metric", help="--search: the retain metric "  # noqa: UP045 (typer)
                                                "(higher is better; default: the task's first)"),
    max_forgetting: Optional[float] = typer.Option(  # noqa: UP045 (typer)
        None, "--max-forgetting", help="--search: the retain score the merge may lose against BASE, absolute, in the "
        "retain metric's units (e.g. 0.02 accuracy)"
    ),
    budget: int = typer.Option(40, "--budget", help="--search: most merged models to evaluate, uniform sweep included"),
    step: float = typer.Option(0.1, "--step", help="--search: the ratio grid's step (divides 1)"),
    seed: int = typer.Option(0, "--seed", help="--search: seeds the order in which neighbouring ratios are tried"),
    batch_size: int = typer.Option(16, "--batch-size", "-b", help="--search: evaluation batch size"),
    limit: Optional[int] = typer.Option(None, "--limit", help="--search: only the first N rows of each task"),  # noqa: UP045 (typer)
) -> None:
    """Average BASE and FINETUNED in weight space, (1 - a) * BASE + a * FINETUNED, and save the result.

    With --search, find one ratio per block (encoders, projectors, LLM embeddings, each LLM layer, ...) instead:
    writes merge_search.json, pareto.png and merged/ into the --output folder."""
    from zoo.training.merge import MergeError, describe_ratios, merge, resolve_ratios

    if search:
        _merge_search(base, finetuned, output, alpha, layer_alpha, {
            "--task": task, "--data": data, "--retain-task": retain_task, "--retain-data": retain_data,
            "--max-forgetting": max_forgetting}, (metric, retain_metric),
            {"budget": budget, "step": step, "seed": seed, "batch_size": batch_size, "limit": limit})
        return
    given = [name for name, value in (("--task", task), ("--data", data), ("--metric", metric),
                                      ("--retain-task", retain_task), ("--retain-data", retain_data),
                                      ("--retain-metric", retain_metric), ("--max-forgetting", max_forgetting),
                                      ("--limit", limit)) if value is not None]
    if given:
        raise typer.BadParameter(f"{', '.join(given)} only apply with --search")
    if alpha is None:
        raise typer.BadParameter("give --alpha A (the weight of FINETUNED), or --search to search the ratios")
    layer_alphas = _parse_layer_alphas(layer_alpha)
    try:
        merged = merge(base, finetuned, alpha, layer_alphas=layer_alphas)
    except MergeError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from err
    ratios = resolve_ratios(merged.state_dict(), alpha, layer_alphas)
    typer.echo(f"merged {base} and {finetuned} (ratio = weight of {finetuned}): {describe_ratios(ratios)}")
    merged.save_pretrained(output)
    typer.echo(f"wrote {output}")


def _merge_search(base: str, finetuned: str, output: str, alpha: float | None, layer_alpha: list[str],
                  required: dict[str, Any], metrics: tuple[str | None, str | None],
                  knobs: dict[str, Any]) -> None:
    """``zoo merge --search``: check the options, run the ratio search and say what it chose."""
    from zoo.training import merge_search as hma
    from zoo.training.merge import MergeError

    if alpha is not None or layer_alpha:
        raise typer.BadParameter("--search chooses the ratios itself: drop --alpha and --layer-alpha")
    missing = [name for name, value in required.items() if value is None]
    if missing:
        raise typer.BadParameter(f"--search needs {', '.join(missing)}")
    target = hma.ScoredTask(required["--task"], required["--data"], metrics[0])
    retain = hma.ScoredTask(required["--retain-task"], required["--retain-data"], metrics[1])
    settings = hma.SearchSettings(required["--max-forgetting"], **knobs)
    try:
        table = hma.run_search(base, finetuned, target, retain, output, settings, progress=not _STATE["quiet"])
    except MergeError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from err
    chosen = table["points"][table["chosen"]]
    for name, row in (("base", table["base"]), ("finetuned", table["finetuned"]), ("chosen", chosen)):
        typer.echo(f"{name:<10} target {table['target']['metric']} {row['target']:.4f}  "
                   f"retain {table['retain']['metric']} {row['retain']:.4f}")
    typer.echo(f"{table['evaluations']} evaluations (stopped: {table['stopped']}); retain floor "
               f"{table['retain_floor']:.4f}")
    typer.echo(f"wrote {output}/{hma.TABLE_FILE}, {output}/{hma.PLOT_FILE} and {output}/{hma.MODEL_DIR}")


def _parse_widths(text: str) -> list[int]:
    """``512,256`` -> ``[512, 256]``; empty -> ``[]``."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise typer.BadParameter(f"--head-hidden-sizes takes positive integers separated by commas, e.g. 512,256; got {text!r}")
    return [int(p) for p in parts]


@app.command("finetune")
def finetune_cmd(
    name: str = typer.Argument(..., help="model: a name from `zoo list`, a directory, hf-hub:org/repo or hf:org/repo"),
    task: str = typer.Option(..., "--task", "-t", help="a built-in task or a task YAML: how rows become examples"),
    data: str = typer.Option(..., "--data", "-d", help="training data file or folder the task's reader takes"),
    stage: Optional[str] = typer.Option(  # noqa: UP045 (typer)
        None, "--stage", "-s", help="align (projectors), instruct (+ LoRA on the LLM; the default), full; for a "
        "property task: head (encoder frozen) or full (the default)"
    ),
    head_hidden_sizes: str = typer.Option(
        "", "--head-hidden-sizes", help="property tasks: the head's hidden widths, e.g. 512,256 (default: a linear head)"
    ),
    head_dropout: float = typer.Option(0.0, "--head-dropout", help="property tasks: dropout in the head"),
    output_dir: str = typer.Option("runs/finetune", "--output-dir", "-o", help="checkpoints, metrics and final/ go here"),
    validation_data: Optional[str] = typer.Option(None, "--validation-data", help="evaluated every eval_every steps"),  # noqa: UP045 (typer)
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="optimizer steps (overrides epochs)"),  # noqa: UP045 (typer)
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="global batch, split across processes"),
    lr: float = typer.Option(1e-4, "--lr"),
    settings: list[str] = typer.Option([], "--set", help="any training setting, e.g. --set grad_accum=4 --set eval_every=50"),
    allow_rng_reset: bool = typer.Option(
        False, "--allow-rng-reset", help="resume even if the checkpoint's random states cannot be read (reseeds them)"
    ),
    weights_dir: Optional[str] = _weights_dir_option(),  # noqa: UP045 (typer)
    device: Optional[str] = typer.Option(  # noqa: UP045 (typer)
        None, "--device", help="where to load the model; training then runs where accelerate places it "
        "(the GPU if there is one; `accelerate launch --cpu` for the CPU)"
    ),
    dtype: Optional[str] = _dtype_option(),  # noqa: UP045 (typer)
) -> None:
    """Fine-tune a model on a task; re-running the same command resumes from the newest complete checkpoint.

    A property task (e.g. -t moleculenet-bbbp) puts a head on an encoder card and trains it on the task's train
    split, validating on its valid split (--set eval_every=epoch --set early_stopping_metric=roc_auc keeps the best).

    Several processes: `accelerate launch --num_processes N -m zoo.cli finetune ...` (same global batch).

    LoRAMoE instead of LoRA in the instruct stage: --set adapter=loramoe --set loramoe_experts=4 --set lora_r=8
    --set loramoe_top_k=2 --set loramoe_balance_weight=0.01 (final/ keeps the LoRAMoE layers; zoo.load reloads it).
    O-LoRA for a new task on a model that carries earlier tasks' O-LoRA adapters (or none yet): --set adapter=olora
    --set olora_lambda1=0.5 --set olora_lambda2=0 (final/ keeps every task's adapter, for the next task).
    """
    from zoo.evaluation.distributed import is_main_process
    from zoo.loading import load
    from zoo.training import TrainingError, finetune

    options = {"max_steps": max_steps, "batch_size": batch_size, "lr": lr, "progress": not _STATE["quiet"]}
    overrides = {**options, **_parse_overrides(settings)}  # --set max_steps=... wins over the default option
    if allow_rng_reset:
        overrides["allow_rng_reset"] = True
    model = load(name, **_load_options(weights_dir, device, dtype))
    try:
        result = finetune(model, task, data, stage, output_dir, validation_data=validation_data,
                          head_hidden_sizes=_parse_widths(head_hidden_sizes), head_dropout=head_dropout, **overrides)
    except TrainingError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from err
    if not is_main_process():
        return
    typer.echo(f"{result.steps} steps, loss {result.loss:.4f}; {result.num_examples} examples, "
               f"{len(result.failed_rows)} failed rows (listed in {output_dir}/failed_rows.json)")
    typer.echo(f"wrote {result.final_dir}")


@app.command("recipe")
def recipe_cmd(
    name: str = typer.Argument(..., help="a model trained here (its card has a recipe), e.g. rxn-retro-uspto50k"),
    data_root: str = typer.Option("../shared/data", "--data-root", help="folder the recipe's data paths are under"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", "-o", help="run folder (default runs/NAME)"),  # noqa: UP045 (typer)
    weights_dir: Optional[str] = typer.Option(None, "--weights-dir", help="local copies of the starting models' weight files"),  # noqa: UP045 (typer)
    settings: list[str] = typer.Option([], "--set", help="override a training setting, e.g. --set max_steps=20"),
) -> None:
    """Retrain a card's bundled weights from its recipe (resumes an interrupted run) and print their sha256."""
    from zoo.recipes import run_recipe
    from zoo.training import TrainingError

    try:
        written = run_recipe(name, data_root, output_dir or f"runs/{name}", weights_dir,
                             **{"progress": not _STATE["quiet"], **_parse_overrides(settings)})
    except TrainingError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from err
    for target, sha256 in written:
        typer.echo(f"wrote {target}\nsha256 {sha256} (put it in the card's weights entry for {target.name})")


@app.command("demo")
def demo_cmd(
    output_dir: str = typer.Option("runs/demo", "--output-dir", "-o", help="where the reports and report.html go"),
    weights_dir: Optional[str] = _weights_dir_option(),  # noqa: UP045 (typer)
    device: Optional[str] = _device_option(),  # noqa: UP045 (typer)
    dtype: Optional[str] = _dtype_option(),  # noqa: UP045 (typer)
) -> None:
    """Load named models and run zero-shot evaluations on samples shipped with the package (offline)."""
    from zoo.demo import run_demo

    run_demo(output_dir, **_load_options(weights_dir, device, dtype))


def main() -> None:
    """Console entry point; errors from user input print as one clear line, not a traceback."""
    from encoders.base import InvalidInputError
    from tasks.config import TaskConfigError
    from zoo.registry import UnknownComponentError
    from zoo.spec import SpecError

    try:
        app()
    except (UnknownComponentError, SpecError, FileNotFoundError, TaskConfigError, InvalidInputError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
