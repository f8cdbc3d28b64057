"""Forgetting benchmark: fine-tune on task A, then on task B, and see how much of A each method keeps.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/forgetting.py [--steps 800] [--n 1000]
        [--test-n 300] [--alphas 0.25,0.5,0.75] [--lr 3e-3] [--out DIR] [--quick]

Data: procedural scenes (``tasks.data.scenes``, seeded): ``--n`` training scenes (seed 11) and ``--test-n``
held-out scenes (seed 12). Task A is colour VQA ("What colour is the circle?"), task B is shape VQA ("What shape
is at the top left?"): one question of each kind per scene. Both are trained as ``scene-instruct`` rows (the
``instruct.jsonl`` rows of that question kind) and scored with the ``vqa`` task (VQAv2 accuracy) on the
held-out ``vqa.jsonl`` rows of that ``question_type``. A model that learns only B answers every question
with a shape name, so A is forgotten unless the method protects it.

Start model: ``scene-vlm-tiny``. Methods, each through ``zoo.finetune`` (``instruct`` stage, ``--steps``
optimizer steps per task, same learning rate and batch size) and ``zoo.merge``:

- ``lora``: LoRA on A (merged into the weights), then a new LoRA on B;
- ``loramoe``: LoRAMoE on A, then the same experts and routers (and the projectors) train on B, balance loss
  included (the instruct stage continues a model's own LoRAMoE layers);
- ``olora``: O-LoRA on A, then a second O-LoRA task adapter on B, kept orthogonal to A's;
- ``hma a=X``: ``zoo.merge(A model, lora A->B model, alpha=X)`` for each of ``--alphas`` (uniform ratios):
  ``(1 - X) * A-model + X * A->B-model`` per tensor.

The table: A's score on the start model, after A (``A before``), after B (``A after``), ``forgetting``
(before - after) and B's score after B; the last lines give the wall time and whether some method keeps more
of A than sequential LoRA at a B score no lower than LoRA's (minus ``--tolerance``). ``--quick`` is a smoke
configuration (a few scenes and steps; numbers meaningless) for the test suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402

START_MODEL = "scene-vlm-tiny"
TRAIN_SEED, TEST_SEED = 11, 12
TASKS = {"A": "colour", "B": "shape"}  # task -> the scenes' question_type it asks
METHODS = ("lora", "loramoe", "olora")  # the zoo finetune adapters run sequentially A then B


@dataclass
class Row:
    """One line of the table (scores are VQA accuracies in [0, 1])."""

    method: str
    a_before: float
    a_after: float
    b_after: float

    @property
    def forgetting(self) -> float:
        return self.a_before - self.a_after


def write_task_files(split: Path) -> dict[str, dict[str, Path]]:
    """Per task, in the split folder (where manifests resolve their image paths): its training rows (the
    ``instruct`` rows of its question kind) and its scored ``vqa`` rows."""
    instruct = [json.loads(line) for line in (split / "instruct.jsonl").read_text().splitlines()]
    vqa = [json.loads(line) for line in (split / "vqa.jsonl").read_text().splitlines()]
    files: dict[str, dict[str, Path]] = {}
    for task, kind in TASKS.items():
        prefix = f"Question: What {kind} "
        chosen = {"train": [r for r in instruct if r["instruction"].startswith(prefix)],
                  "eval": [r for r in vqa if r["question_type"] == kind]}
        files[task] = {}
        for name, rows in chosen.items():
            files[task][name] = split / f"forgetting_{task}_{name}.jsonl"
            files[task][name].write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return files


def score(model: object, data: Path, batch_size: int) -> float:
    """VQA accuracy of ``model`` on the rows of ``data``."""
    import zoo

    result = zoo.evaluate(model, "vqa", data, batch_size=batch_size, progress=False, report=False,
                          **{"generation.max_new_tokens": 4})
    return float(result["metrics"]["vqa_accuracy"])


def train(model: object, data: Path, out: Path, adapter: str, args: argparse.Namespace, **settings: object) -> Path:
    """``zoo.finetune`` of ``model`` (a model or a saved folder) on ``data``, ``instruct`` stage unless
    ``settings`` say otherwise; returns its ``final/`` folder."""
    import zoo

    chosen = {"stage": "instruct", "adapter": adapter, "frozen": ["encoders"], **settings}
    result = zoo.finetune(model, "scene-instruct", data, output_dir=out, max_steps=args.steps, batch_size=args.batch_size,
                          lr=args.lr, lora_r=8, lora_alpha=16, seed=0, save_every=max(args.steps, 1), progress=False,
                          **chosen)
    return Path(result.final_dir)


def run(args: argparse.Namespace, work: Path) -> tuple[list[Row], float]:
    """Every method's row and the A score of the start model."""
    import zoo
    from tasks.data.scenes import generate_scenes

    generate_scenes(work / "train", args.n, TRAIN_SEED)
    generate_scenes(work / "test", args.test_n, TEST_SEED)
    train_files = write_task_files(work / "train")
    test_files = write_task_files(work / "test")

    def scores(model: object) -> tuple[float, float]:
        return (score(model, test_files["A"]["eval"], args.eval_batch_size),
                score(model, test_files["B"]["eval"], args.eval_batch_size))

    start_a, _ = scores(zoo.load(START_MODEL))
    rows: list[Row] = []
    finals: dict[str, Path] = {}
    for method in METHODS:
        after_a = train(START_MODEL, train_files["A"]["train"], work / method / "A", method, args)
        a_before, _ = scores(zoo.load(after_a))
        after_b = train(after_a, train_files["B"]["train"], work / method / "B", method, args)
        a_after, b_after = scores(zoo.load(after_b))
        rows.append(Row(method, a_before, a_after, b_after))
        finals[method] = after_b
        if method == "lora":
            finals["lora_A"] = after_a
        print(f"  {method}: done ({time.strftime('%H:%M:%S')})", flush=True)
    for alpha in args.alphas:
        merged = zoo.merge(finals["lora_A"], finals["lora"], alpha)
        a_after, b_after = scores(merged)
        rows.append(Row(f"hma a={alpha:g}", rows[0].a_before, a_after, b_after))
    return rows, start_a


def verdict(rows: Sequence[Row], tolerance: float) -> str:
    """Whether a method keeps more of A than sequential LoRA at a B score no lower than LoRA's - tolerance."""
    lora = rows[0]
    better = [r for r in rows[1:] if r.a_after > lora.a_after and r.b_after >= lora.b_after - tolerance]
    if better:
        names = ", ".join(f"{r.method} (A after {r.a_after:.3f}, B {r.b_after:.3f})" for r in better)
        return (f"target met: {names} keep more of A than lora (A after {lora.a_after:.3f}, B {lora.b_after:.3f}) "
                f"at a B score within {tolerance:g} of it")
    return (f"target NOT met: no method keeps more of A than lora (A after {lora.a_after:.3f}) at a B score "
            f"within {tolerance:g} of lora's {lora.b_after:.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Forgetting of task A after fine-tuning on task B, per method.")
    parser.add_argument("--steps", type=int, default=800, help="optimizer steps per task (default 800)")
    parser.add_argument("--n", type=int, default=1000, help="training scenes (one A and one B row each)")
    parser.add_argument("--test-n", type=int, default=300, help="held-out scenes (one A and one B row each)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--alphas", help="uniform HMA ratios, comma-separated (default 0.25,0.5,0.75; --quick: 0.5)")
    parser.add_argument("--tolerance", type=float, default=0.02, help="how much lower B may be than lora's")
    parser.add_argument("--out", help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--quick", action="store_true", help="smoke configuration: 8 training and 16 test scenes, 2 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.n, args.test_n = 2, 8, 16
    args.alphas = [float(a) for a in (args.alphas or ("0.5" if args.quick else "0.25,0.5,0.75")).split(",")]

    started = time.time()
    print(f"task A = {TASKS['A']} VQA, task B = {TASKS['B']} VQA; {args.n} training / {args.test_n} test scenes; "
          f"{args.steps} steps per task, batch {args.batch_size}, lr {args.lr:g}; start model {START_MODEL}",
          flush=True)
    if args.out:
        rows, start_a = run(args, Path(args.out))
    else:
        with tempfile.TemporaryDirectory(prefix="forgetting-") as tmp:
            rows, start_a = run(args, Path(tmp))
    print(f"A on the start model: {start_a:.3f}")
    print(f"{'method':14s} {'A before':>9s} {'A after':>9s} {'forgetting':>11s} {'B':>7s}")
    for row in rows:
        print(f"{row.method:14s} {row.a_before:9.3f} {row.a_after:9.3f} {row.forgetting:11.3f} {row.b_after:7.3f}")
    print(f"run time: {time.time() - started:.0f} s")
    print(verdict(rows, args.tolerance))


if __name__ == "__main__":
    main()
