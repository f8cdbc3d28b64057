"""HMA ratio search: per-block merge ratios that maximise a target task's score under a bound on forgetting.

``zoo merge BASE FINETUNED --search`` interpolates every block of parameters (an encoder, a projector, the LLM's
embeddings, each LLM layer, the rest of the LLM: its final norm and head) between the base model (ratio 0) and
the fine-tuned one (ratio 1), and looks for the ratio vector with the best score on the fine-tuned ("target")
task whose score on a second ("retain") task stays at or above ``base retain score - max_forgetting``. The
bound is absolute, in the retain metric's own units (``0.02`` with an accuracy metric: at most two points of
accuracy lost). Both metrics are maximised, so pick metrics where higher is better.

The search is small enough for a CPU and honest about what it tried:

1. the uniform sweep ``alpha = 0, step, ..., 1`` (every block at the same ratio: plain weight averaging; its
   ends are the base and the fine-tuned model);
2. a first-improvement local search on the ``step`` grid from the best feasible uniform point: single-block
   moves (``+-step``, i.e. coordinate ascent) first, then swaps (one block ``+step``, another ``-step``, which
   move along the forgetting bound), each neighbourhood visited in a seeded random order. It stops at a local
   optimum or when the budget of evaluations is spent.

The search selects on the scores of the data it is given: search on validation data and report the chosen
model on held-out test data (``zoo eval``), or the gain over uniform averaging may be noise it picked.

Every ratio vector is evaluated at most once (a cache keyed by the vector), and the budget counts distinct
evaluations, the uniform sweep included. :func:`search_ratios` takes any ``evaluate(ratios) -> (target,
retain)`` callable, so it runs without models; :func:`run_search` wires it to ``merge`` and ``zoo.evaluate``
and writes ``merge_search.json``, ``pareto.png`` and the merged model (``merged/``) into the run folder.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from torch import nn

from zoo.training.merge import MergeError, merge

Ratios = tuple[float, ...]
Evaluate = Callable[[Ratios], tuple[float, float]]

TABLE_FILE = "merge_search.json"
PLOT_FILE = "pareto.png"
MODEL_DIR = "merged"


@dataclass(frozen=True)
class BlockRule:
    """Keys that start with a match of ``pattern`` (a regex ending at a dot or at the key's end) form one block
    per distinct match; the match is the block's name. ``kind`` says what the blocks are."""

    kind: str
    pattern: str


# First matching rule wins; a key no rule matches is blocked by its first name component (e.g. logit_scale).
BLOCK_RULES: tuple[BlockRule, ...] = (
    BlockRule("llm-layer", r"language_model\.(?:\w+\.)*?(?:layers|layer|h|block)\.\d+"),
    BlockRule("llm-embeddings", r"language_model\.(?:\w+\.)*?(?:embed_tokens|embed_positions|wte|wpe|shared)"),
    BlockRule("llm-rest", r"language_model"),
    BlockRule("encoder", r"(?:encoders|towers)\.\w+"),
    BlockRule("text-tower", r"text_tower"),
    BlockRule("projector", r"(?:projectors|projections)\.\w+"),
    BlockRule("text-projection", r"text_projection"),
)
FALLBACK_RULE = BlockRule("other", r"[^.]+")


@dataclass(frozen=True)
class Block:
    """One group of state-dict keys that shares a ratio; ``pattern`` is the ``merge`` glob that selects it."""

    name: str
    kind: str
    rule: int
    keys: tuple[str, ...]

    @property
    def pattern(self) -> str:
        return self.name if self.keys == (self.name,) else f"{self.name}.*"


def group_blocks(keys: Sequence[str], rules: Sequence[BlockRule] = BLOCK_RULES) -> list[Block]:
    """The blocks of ``keys`` (state-dict order of their first key), each from the first rule that matches.

    Raises :class:`MergeError` if the blocks' globs, applied first-match-wins in rule order (as ``merge``
    applies ``layer_alphas``), would not select exactly the blocks' keys.
    """
    rules = [*rules, FALLBACK_RULE]
    compiled = [re.compile(f"(?:{rule.pattern})(?=\\.|$)") for rule in rules]
    members: dict[str, list[str]] = {}
    origin: dict[str, int] = {}
    for key in keys:
        index, match = next((i, m) for i, c in enumerate(compiled) if (m := c.match(key)))
        name = match.group(0)
        members.setdefault(name, []).append(key)
        origin.setdefault(name, index)
    blocks = [Block(name, rules[origin[name]].kind, origin[name], tuple(ks)) for name, ks in members.items()]
    ordered = block_patterns(blocks, [0.0] * len(blocks))
    for block in blocks:
        for key in block.keys:
            owner = next((p for p in ordered if fnmatchcase(key, p)), None)
            if owner != block.pattern:
                raise MergeError(
                    f"parameter {key} is in block {block.name}, but merge would give it the ratio of glob {owner!r}; "
                    "the block rules (BLOCK_RULES in zoo/training/merge_search.py) need a rule that keeps them apart"
                )
    return blocks


def block_patterns(blocks: Sequence[Block], ratios: Sequence[float]) -> dict[str, float]:
    """``merge``'s ``layer_alphas`` for one ratio per block: the blocks' globs, most specific rule first."""
    if len(blocks) != len(ratios):
        raise MergeError(f"{len(ratios)} ratios for {len(blocks)} blocks")
    order = sorted(range(len(blocks)), key=lambda i: blocks[i].rule)
    return {blocks[i].pattern: float(ratios[i]) for i in order}


@dataclass(frozen=True)
class Point:
    """One evaluated ratio vector; ``source`` is ``uniform`` (the sweep) or ``search``."""

    ratios: Ratios
    target: float
    retain: float
    source: str


@dataclass
class SearchResult:
    """Every evaluated point in evaluation order, which of them the bound allows, the Pareto front (indices),
    the chosen point's index, and why the search stopped (``local optimum`` or ``budget``)."""

    points: list[Point]
    retain_floor: float
    feasible: list[bool]
    pareto: list[int]
    chosen: int
    stopped: str


class _Evaluations:
    """``evaluate`` behind a cache keyed by the (rounded) ratio vector, counting distinct evaluations."""

    def __init__(self, evaluate: Evaluate, budget: int, on_evaluation: Callable[[Point], None] | None) -> None:
        self.evaluate, self.budget, self.on_evaluation = evaluate, budget, on_evaluation
        self.cache: dict[Ratios, Point] = {}
        self.points: list[Point] = []

    def __call__(self, ratios: Ratios, source: str) -> Point | None:
        """The point at ``ratios``, or None when it is not cached and the budget is spent."""
        key = tuple(round(r, 6) for r in ratios)
        if key in self.cache:
            return self.cache[key]
        if len(self.points) >= self.budget:
            return None
        target, retain = self.evaluate(key)
        point = Point(key, float(target), float(retain), source)
        self.cache[key] = point
        self.points.append(point)
        if self.on_evaluation is not None:
            self.on_evaluation(point)
        return point


def uniform_grid(step: float) -> list[float]:
    """``0, step, ..., 1``; ``step`` must divide 1 (0.1, 0.125, 0.25, ...)."""
    count = round(1 / step) if step > 0 else 0
    if count < 1 or abs(count * step - 1) > 1e-9:
        raise MergeError(f"the search step must divide 1 (e.g. 0.1 or 0.25), got {step}")
    return [round(i / count, 6) for i in range(count + 1)]


def search_ratios(
    evaluate: Evaluate,
    num_blocks: int,
    max_forgetting: float,
    *,
    budget: int = 40,
    step: float = 0.1,
    seed: int = 0,
    on_evaluation: Callable[[Point], None] | None = None,
) -> SearchResult:
    """Search per-block ratios maximising the target score with ``retain >= retain(base) - max_forgetting``.

    ``evaluate(ratios)`` scores one ratio vector (``num_blocks`` values in [0, 1]; all 0 is the base model) and
    returns ``(target, retain)``, both higher-is-better. ``budget`` bounds the distinct evaluations, the
    ``1 / step + 1`` of the uniform sweep included. The same arguments give the same result.
    """
    if num_blocks < 1:
        raise MergeError("the ratio search needs at least one block of parameters")
    if max_forgetting < 0:
        raise MergeError(f"max_forgetting is the retain score the merge may lose, >= 0; got {max_forgetting}")
    grid = uniform_grid(step)
    if budget < len(grid):
        raise MergeError(f"a budget of {budget} evaluations does not cover the {len(grid)}-point uniform sweep "
                         f"(step {step}); raise the budget or the step")
    evaluations = _Evaluations(evaluate, budget, on_evaluation)
    uniform = [evaluations((alpha,) * num_blocks, "uniform") for alpha in grid]
    if not math.isfinite(uniform[0].retain):
        raise MergeError(f"the base model's retain score is {uniform[0].retain}; the forgetting bound needs a number "
                         "— check the retain task, data and metric")
    floor = uniform[0].retain - max_forgetting

    def feasible(point: Point) -> bool:
        return point.retain >= floor

    incumbent = max((p for p in uniform if feasible(p)), key=_score)
    stopped = _local_search(evaluations, incumbent, feasible, step, random.Random(seed))
    points = evaluations.points
    allowed = [feasible(p) for p in points]
    chosen = max((i for i in range(len(points)) if allowed[i]), key=lambda i: (_score(points[i]), -i))
    return SearchResult(points, floor, allowed, pareto_front(points), chosen, stopped)


def _score(point: Point) -> tuple[float, float]:
    """Better is a higher target score, then a higher retain score."""
    return point.target, point.retain


def _local_search(
    evaluations: _Evaluations, incumbent: Point, feasible: Callable[[Point], bool], step: float, rng: random.Random
) -> str:
    """First-improvement ascent over single-block moves, then swaps; returns why it stopped."""
    while True:
        for candidate in _neighbours(incumbent.ratios, step, rng):
            point = evaluations(candidate, "search")
            if point is None:
                return "budget"
            if feasible(point) and _score(point) > _score(incumbent):
                incumbent = point
                break
        else:
            return "local optimum"


def _neighbours(ratios: Ratios, step: float, rng: random.Random) -> Iterator[Ratios]:
    """Ratio vectors one move away on the grid, in a seeded order: each block ``+-step``, then every swap."""
    n = len(ratios)
    singles = [{i: sign * step} for i in range(n) for sign in (1, -1)]
    swaps = [{i: step, j: -step} for i in range(n) for j in range(n) if i != j]
    rng.shuffle(singles)
    rng.shuffle(swaps)
    for move in singles + swaps:
        moved = tuple(round(r + move.get(i, 0.0), 6) for i, r in enumerate(ratios))
        if all(0.0 <= r <= 1.0 for r in moved):
            yield moved


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point beats on both scores (at least as good on both, better on one)."""
    return [
        i for i, p in enumerate(points)
        if not any(q.target >= p.target and q.retain >= p.retain and _score(q) != _score(p) for q in points)
    ]


# --- models and tasks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredTask:
    """A task, its data and the metric (a key of ``results['metrics']``; None: the task's first) to score."""

    task: str
    data: str
    metric: str | None = None


@dataclass(frozen=True)
class SearchSettings:
    """The bound (``max_forgetting``, absolute, in the retain metric's units) and the search's knobs."""

    max_forgetting: float
    budget: int = 40
    step: float = 0.1
    seed: int = 0
    batch_size: int = 16
    limit: int | None = None


@dataclass
class TaskScorer:
    """Scores one model on a task, resolving the metric name on first use."""

    spec: ScoredTask
    batch_size: int
    limit: int | None
    metric: str | None = None

    def __call__(self, model: nn.Module) -> float:
        from zoo.evaluation.evaluate import evaluate

        results = evaluate(model, self.spec.task, self.spec.data, batch_size=self.batch_size, limit=self.limit,
                           progress=False, report=False)
        metrics = results["metrics"]
        name = self.metric or self.spec.metric or next(iter(metrics), None)
        if name not in metrics or not isinstance(metrics[name], (int, float)):
            raise MergeError(f"task {self.spec.task!r} on {self.spec.data} reports no metric {name!r}; it reports: "
                             f"{', '.join(k for k, v in metrics.items() if isinstance(v, (int, float)))}")
        self.metric = name
        return float(metrics[name])


def model_evaluator(base: nn.Module, finetuned: nn.Module, blocks: Sequence[Block], target: TaskScorer,
                    retain: TaskScorer) -> Evaluate:
    """``evaluate(ratios)``: merge ``base`` and ``finetuned`` with one ratio per block and score both tasks."""

    def evaluate(ratios: Ratios) -> tuple[float, float]:
        merged = merge(base, finetuned, 0.0, layer_alphas=block_patterns(blocks, ratios))
        return target(merged), retain(merged)

    return evaluate


def run_search(
    base: nn.Module | str | Path,
    finetuned: nn.Module | str | Path,
    target: ScoredTask,
    retain: ScoredTask,
    run_dir: str | Path,
    settings: SearchSettings,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Search, then write ``merge_search.json``, ``pareto.png`` and the chosen merge (``merged/``) into
    ``run_dir``; returns the table. Models may be given as anything ``zoo.load`` takes."""
    from tqdm.auto import tqdm

    from zoo.loading import load
    from zoo.training.plots import plot_merge_pareto

    base_model = base if isinstance(base, nn.Module) else load(base)
    finetuned_model = finetuned if isinstance(finetuned, nn.Module) else load(finetuned)
    blocks = group_blocks(list(base_model.state_dict()))
    target_scorer = TaskScorer(target, settings.batch_size, settings.limit)
    retain_scorer = TaskScorer(retain, settings.batch_size, settings.limit)
    evaluate = model_evaluator(base_model, finetuned_model, blocks, target_scorer, retain_scorer)
    with tqdm(total=settings.budget, desc="merge search", unit="eval", disable=not progress) as bar:

        def on_evaluation(point: Point) -> None:
            bar.update(1)
            bar.set_postfix(target=f"{point.target:.4g}", retain=f"{point.retain:.4g}")

        result = search_ratios(evaluate, len(blocks), settings.max_forgetting, budget=settings.budget,
                               step=settings.step, seed=settings.seed, on_evaluation=on_evaluation)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    table = search_table(result, blocks, target, retain, settings, target_scorer.metric, retain_scorer.metric)
    (run_dir / TABLE_FILE).write_text(json.dumps(table, indent=2) + "\n")
    plot_merge_pareto(table["points"], run_dir / PLOT_FILE, _axis_label("target", target, target_scorer.metric),
                      _axis_label("retain", retain, retain_scorer.metric), result.retain_floor)
    chosen = result.points[result.chosen]
    merged = merge(base_model, finetuned_model, 0.0, layer_alphas=block_patterns(blocks, chosen.ratios))
    merged.card_meta = _with_search_card(merged.card_meta, table)
    merged.save_pretrained(run_dir / MODEL_DIR)
    return table


def _axis_label(role: str, scored: ScoredTask, metric: str | None) -> str:
    """``target: vqa on val.jsonl (accuracy)``: file names only, so a long path does not swamp the plot."""
    return f"{role}: {Path(scored.task).name} on {Path(scored.data).name} ({metric})"


def search_table(result: SearchResult, blocks: Sequence[Block], target: ScoredTask, retain: ScoredTask,
                 settings: SearchSettings, target_metric: str | None, retain_metric: str | None) -> dict[str, Any]:
    """The JSON table of a search: settings, blocks, every evaluated point, the front and the chosen point."""
    points = result.points
    by_ratios = {p.ratios: p for p in points}
    base, finetuned = by_ratios[(0.0,) * len(blocks)], by_ratios[(1.0,) * len(blocks)]
    pareto = set(result.pareto)
    return {
        "target": {**asdict(target), "metric": target_metric},
        "retain": {**asdict(retain), "metric": retain_metric},
        "bound": "retain >= base retain - max_forgetting (absolute, in the retain metric's units)",
        "max_forgetting": settings.max_forgetting,
        "retain_floor": result.retain_floor,
        "base": {"target": base.target, "retain": base.retain},
        "finetuned": {"target": finetuned.target, "retain": finetuned.retain},
        "budget": settings.budget,
        "step": settings.step,
        "seed": settings.seed,
        "evaluations": len(points),
        "stopped": result.stopped,
        "blocks": [{"name": b.name, "kind": b.kind, "pattern": b.pattern, "tensors": len(b.keys)} for b in blocks],
        "points": [
            {
                "index": i,
                "source": p.source,
                **({"alpha": p.ratios[0]} if p.source == "uniform" else {}),
                "ratios": dict(zip((b.name for b in blocks), p.ratios, strict=True)),
                "target": p.target,
                "retain": p.retain,
                "feasible": result.feasible[i],
                "pareto": i in pareto,
                "chosen": i == result.chosen,
            }
            for i, p in enumerate(points)
        ],
        "chosen": result.chosen,
    }


def _with_search_card(meta: Mapping[str, Any], table: Mapping[str, Any]) -> dict[str, Any]:
    """The merge card plus how its ratios were chosen and what they score."""
    chosen = table["points"][table["chosen"]]
    target, retain = table["target"], table["retain"]
    rows = [("base", table["base"]), ("fine-tuned", table["finetuned"]), ("this merge", chosen)]
    lines = [
        "## Ratio search",
        "",
        f"Ratios chosen by `zoo merge --search` over {table['evaluations']} evaluations (stopped: "
        f"{table['stopped']}), one per block of parameters, so the default ratio above applies to none: the best "
        f"`{target['metric']}` of task `{target['task']}` on `{target['data']}` whose `{retain['metric']}` of task "
        f"`{retain['task']}` on `{retain['data']}` is at least {table['retain_floor']:.4g} (the base's minus "
        f"{table['max_forgetting']:g}). Every evaluated point is in the run folder's `{TABLE_FILE}`, their plot in "
        f"`{PLOT_FILE}`.",
        "",
        f"| model | target {target['metric']} | retain {retain['metric']} |",
        "|---|---|---|",
        *(f"| {name} | {row['target']:.4f} | {row['retain']:.4f} |" for name, row in rows),
        "",
    ]
    return {**meta, "body": meta.get("body", "").rstrip("\n") + "\n\n" + "\n".join(lines)}
