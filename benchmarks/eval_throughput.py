"""Evaluation throughput: batched generation and multiple-choice scoring vs a one-sample-at-a-time loop.

Both sides use the same model, prompts and settings, in one run (best of five interleaved timings each); the script
checks that batching changes no prediction and prints samples/s side by side.

    .venv/bin/python benchmarks/eval_throughput.py [--model tiny-test-vlm] [--n 64] [--batch-size 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place (shared helpers are then benchmarks._measure).
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import time

import numpy as np
import torch

import zoo
from zoo.evaluation.runners import answer_log_likelihoods, build_options, score_options

OPTIONS = ["red", "green", "blue", "yellow"]


def _inputs(n: int) -> tuple[list[str], list[list[np.ndarray]]]:
    rng = np.random.RandomState(0)
    prompts = [f"<image> Question {i}: what colour is the shape? Answer:" for i in range(n)]
    images = [[rng.randint(0, 256, (48, 48, 3), dtype=np.uint8)] for _ in range(n)]
    return prompts, images


REPEATS = 5


def _timed_pair(batched, loop) -> tuple[float, object, float, object]:
    """Best wall time of each of two workloads over ``REPEATS`` interleaved runs (on a shared machine a busy
    spell then slows both alike), and each one's last output."""
    best = {batched: float("inf"), loop: float("inf")}
    out = {}
    for _ in range(REPEATS):
        for fn in (batched, loop):
            start = time.perf_counter()
            out[fn] = fn()
            best[fn] = min(best[fn], time.perf_counter() - start)
    return best[batched], out[batched], best[loop], out[loop]


def generation(model, prompts, images, batch_size: int, max_new_tokens: int) -> dict[str, float]:
    settings = {"max_new_tokens": max_new_tokens, "do_sample": False}

    def batched() -> list[str]:
        out = []
        for i in range(0, len(prompts), batch_size):
            out += model.generate_text(prompts[i : i + batch_size], {"image": images[i : i + batch_size]}, **settings)
        return out

    def loop() -> list[str]:
        return [model.generate_text([p], {"image": [im]}, **settings)[0] for p, im in zip(prompts, images, strict=True)]

    t_batched, out_batched, t_loop, out_loop = _timed_pair(batched, loop)
    assert out_batched == out_loop, "batched generation changed a prediction"
    return {"batched": len(prompts) / t_batched, "loop": len(prompts) / t_loop}


def multiple_choice(model, prompts, images, batch_size: int) -> dict[str, float]:
    """Batched: ``batch_size`` questions at a time through the evaluation's option scoring (a causal LM runs each
    question once and its options on the question's KV cache). Loop: one question at a time, each option a full
    prompt-and-answer row, as scoring worked before sharing."""

    def batched() -> torch.Tensor:
        out = []
        for i in range(0, len(prompts), batch_size):
            ps, ims = prompts[i : i + batch_size], images[i : i + batch_size]
            ll, counts = score_options(model, build_options(model, ps, {"image": ims}, [OPTIONS] * len(ps)))
            out.append(torch.stack([ll, counts.to(ll.dtype)], -1).view(len(ps), len(OPTIONS), 2))
        return torch.cat(out)

    def loop() -> torch.Tensor:
        out = []
        for p, im in zip(prompts, images, strict=True):
            batch = model.processor([p] * len(OPTIONS), {"image": [im] * len(OPTIONS)}, targets=OPTIONS)
            with torch.no_grad():
                ll, counts = answer_log_likelihoods(model, batch.to(model.device))
            out.append(torch.stack([ll, counts.to(ll.dtype)], -1).view(1, len(OPTIONS), 2))
        return torch.cat(out)

    t_batched, ll_batched, t_loop, ll_loop = _timed_pair(batched, loop)
    torch.testing.assert_close(ll_batched, ll_loop, rtol=1e-4, atol=1e-4)
    for scores in (lambda s: s[..., 0], lambda s: s[..., 0] / s[..., 1]):  # raw and length-normalised
        assert torch.equal(scores(ll_batched).argmax(1), scores(ll_loop).argmax(1)), "batching changed a chosen option"
    return {"batched": len(prompts) / t_batched, "loop": len(prompts) / t_loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-test-vlm")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = zoo.load(args.model)
    prompts, images = _inputs(args.n)
    model.generate_text(prompts[:2], {"image": images[:2]}, max_new_tokens=2)  # warm-up
    gen = generation(model, prompts, images, args.batch_size, args.max_new_tokens)
    mc = multiple_choice(model, prompts, images, args.batch_size)
    print(f"model {args.model}, {args.n} samples, batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
          f"device {model.device}")
    print(f"{'workload':<34}{'batched /s':>12}{'loop /s':>12}{'speed-up':>10}")
    for name, r in ((f"generate ({args.max_new_tokens} new tokens, greedy)", gen), (f"multiple choice ({len(OPTIONS)} options)", mc)):
        print(f"{name:<34}{r['batched']:>12.1f}{r['loop']:>12.1f}{r['batched'] / r['loop']:>9.1f}x")
    print("identical predictions: yes (checked)")


if __name__ == "__main__":
    main()
