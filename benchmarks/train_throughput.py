"""Training throughput: padded vs padding-free packed batches, same model, data and steps, in one run.

Each setting runs ``zoo.finetune`` in a fresh subprocess (stage ``full``) on the first rows of USPTO-50K
retrosynthesis as text prompts (very uneven lengths, where packing matters); samples/s is the median of the
logged steps after the first, peak memory is the subprocess's own RSS high-water mark (VmHWM) or CUDA's
``max_memory_allocated``. The ideal speed-up is what packing could give at best: the padded batches' tokens
(batch x longest example) over their real tokens, on the same timed steps of the same batch plan.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--batch-size 16] [--rows 512] [--repeats 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place (shared helpers are then benchmarks._measure).
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

from benchmarks._measure import peak_memory_mb  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uspto50k"
LM = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
      "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 2048, "vocab_size": 600}


def _data(rows: int, root: Path) -> Path:
    for part in ("src", "tgt"):
        lines = (SHARED / f"{part}-train.txt").read_text().splitlines()[:rows]
        (root / f"{part}-train.txt").write_text("\n".join(lines) + "\n")
    return root / "src-train.txt"


def child(batching: str, steps: int, batch_size: int, data: str, out: str) -> dict:
    """One training run in this fresh process; samples/s from metrics.jsonl, peak memory of this process."""
    import zoo
    from tasks.config import load_task
    from zoo.training import TrainingConfig
    from zoo.training.data import batch_plan, build_examples

    spec = zoo.card("tiny-test-vlm").spec
    model = zoo.build({**spec, "backbone": {"type": "hf-causal-lm", "config": {"model_config": LM}}})
    task = load_task("retro-uspto50k", modality=None, reader="uspto50k-retro",
                     prompt_template="Product: {item} Reactants:")
    zoo.finetune(model, task, data, stage="full", output_dir=out, max_steps=steps, batch_size=batch_size,
                 batching=batching, progress=False, lr=1e-3)
    records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["samples_per_s"] for r in records if "samples_per_s" in r][1:]
    losses = [r["loss"] for r in records if "loss" in r]
    lengths = [e.length for e in build_examples(model, task, data).examples]
    timed = batch_plan(lengths, batch_size, steps, TrainingConfig().seed, grouped=False)[1:]
    padded_tokens = sum(len(b) * max(lengths[i] for i in b) for b in timed)
    real_tokens = sum(lengths[i] for b in timed for i in b)
    return {"samples_per_s": statistics.median(speeds), "peak_mb": peak_memory_mb(), "final_loss": losses[-1],
            "padded_tokens": padded_tokens, "real_tokens": real_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each setting; the fastest counts")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.steps, args.batch_size, args.child[1], args.child[2])))
        return
    if not SHARED.is_dir():
        sys.exit(f"skipped: {SHARED} not found (the shared data exists only on project machines)")
    with tempfile.TemporaryDirectory() as tmp:
        data = _data(args.rows, Path(tmp))
        results: dict[str, dict] = {}
        for repeat in range(args.repeats):  # interleaved, so a busy spell on a shared machine slows both alike
            for batching in ("padded", "packed"):
                command = [sys.executable, __file__, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                           "--child", batching, str(data), str(Path(tmp) / f"{batching}-{repeat}")]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                run = json.loads(done.stdout.strip().splitlines()[-1])
                if batching not in results or run["samples_per_s"] > results[batching]["samples_per_s"]:
                    results[batching] = run
    print(f"{args.rows} USPTO-50K rows, {args.steps} steps of batch {args.batch_size}, 4-layer 256-d Llama, stage full")
    print(f"{'batching':<10}{'samples/s':>11}{'peak MB':>10}{'final loss':>12}")
    for batching, r in results.items():
        print(f"{batching:<10}{r['samples_per_s']:>11.1f}{r['peak_mb']:>10.0f}{r['final_loss']:>12.3f}")
    padded, packed = results["padded"], results["packed"]
    ideal = padded["padded_tokens"] / padded["real_tokens"]
    measured = packed["samples_per_s"] / padded["samples_per_s"]
    print(f"padding: {1 - 1 / ideal:.1%} of the padded batches' tokens (timed steps)")
    print(f"packed / padded throughput: {measured:.2f}x measured, {ideal:.2f}x ideal (padded tokens / real tokens): "
          f"{measured / ideal:.0%} of the ideal (target 85 %)")

if __name__ == "__main__":
    main()
