"""Streaming retrieval metrics vs the dense N x M approach: wall time, peak memory, identical recalls.

A third timing, ``bare matmul``, computes the same ``chunk_size``-query block products the streaming
metric computes and discards them: the floor any exact streaming metric pays. At sizes where the dense
matrix cannot be held (``--skip-dense``, e.g. ``--n 200000``) streaming is reported against it alone.
Each approach runs in a fresh subprocess so its peak resident memory (``VmHWM``, which sees torch's
allocations, unlike tracemalloc) is its own. A third subprocess only builds the embeddings, giving the
baseline that both approaches share. Embeddings are seeded random unit vectors: gallery ``g_i`` and
query ``q_i = normalize(g_i + noise * z_i / sqrt(dim))``, so query i's one positive is gallery item i
and recall is neither 0 nor 1.

    .venv/bin/python benchmarks/retrieval.py --n 50000
    .venv/bin/python benchmarks/retrieval.py --n 200000 --skip-dense --repeats 1

On a CPU shared with other jobs, set ``OMP_WAIT_POLICY=PASSIVE`` for every approach alike: spinning
OpenMP threads that get descheduled slow the streaming metric's many element-wise passes far more than
one large matrix product.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place (shared helpers are then benchmarks._measure).
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import json
import subprocess
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._measure import peak_memory_mb  # noqa: E402
from tasks.metrics import retrieval_metrics  # noqa: E402

KS = (1, 5, 10)
APPROACHES = ("data only", "bare matmul", "streaming", "dense")


def make_embeddings(n: int, dim: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded unit-norm queries and gallery where query i's positive is gallery item i."""
    generator = torch.Generator().manual_seed(seed)
    gallery = F.normalize(torch.randn(n, dim, generator=generator), dim=1)
    queries = F.normalize(gallery + noise * torch.randn(n, dim, generator=generator) / dim**0.5, dim=1)
    return queries, gallery


def dense_recalls(queries: torch.Tensor, gallery: torch.Tensor) -> dict[str, float]:
    """The usual approach: the full N x M score matrix, then top-k per row."""
    scores = queries @ gallery.T
    top = torch.topk(scores, max(KS), dim=1).indices
    hits = top == torch.arange(len(queries))[:, None]
    return {f"recall@{k}": int(hits[:, :k].any(dim=1).sum()) / len(queries) for k in KS}


def bare_matmul(queries: torch.Tensor, gallery: torch.Tensor, chunk_size: int) -> None:
    """The N x M products the streaming metric computes, in blocks of chunk_size queries into one reused
    buffer, results discarded: the floor of any exact metric."""
    rows = min(chunk_size, len(queries))
    buffer = torch.empty(len(gallery) * rows)
    for start in range(0, len(queries), chunk_size):
        stop = min(start + chunk_size, len(queries))
        torch.mm(
            gallery, queries[start:stop].T, out=buffer[: len(gallery) * (stop - start)].view(-1, stop - start)
        )


def run_worker(args: argparse.Namespace) -> None:
    queries, gallery = make_embeddings(args.n, args.dim, args.noise, args.seed)
    start = time.perf_counter()
    if args.worker == "streaming":
        metrics = retrieval_metrics(
            queries, gallery, [[i] for i in range(args.n)], ks=KS, chunk_size=args.chunk_size
        )
        recalls = {f"recall@{k}": metrics[f"recall@{k}"] for k in KS}
    elif args.worker == "bare matmul":
        bare_matmul(queries, gallery, args.chunk_size)
        recalls = {}
    elif args.worker == "dense":
        recalls = dense_recalls(queries, gallery)
    else:
        recalls = {}
    seconds = time.perf_counter() - start
    peak_mib = peak_memory_mb()
    print(json.dumps({"approach": args.worker, "seconds": seconds, "peak_rss_mib": peak_mib, **recalls}))


def run_in_subprocess(approach: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        approach,
        "--n",
        str(args.n),
        "--dim",
        str(args.dim),
        "--noise",
        str(args.noise),
        "--seed",
        str(args.seed),
        "--chunk-size",
        str(args.chunk_size),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{approach} worker failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _available_memory_gib() -> float | None:
    """``MemAvailable`` from ``/proc/meminfo`` (None where there is none), so dense never swaps the host."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50_000, help="number of queries and of gallery items")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--noise", type=float, default=5.0, help="query noise scale; higher means lower recall"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--chunk-size", type=int, default=1024, help="queries per chunk for the streaming metric"
    )
    parser.add_argument(
        "--skip-dense", action="store_true", help="do not build the N x M matrix (sizes that cannot hold it)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved runs of every approach; each reports its fastest"
    )
    parser.add_argument("--worker", choices=APPROACHES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    dense_gib = args.n * args.n * 4 / 2**30
    print(
        f"N = M = {args.n}, dim {args.dim}, chunk {args.chunk_size}, torch threads {torch.get_num_threads()}; "
        f"a dense float32 score matrix is {dense_gib:.2f} GiB"
    )
    available_gib = _available_memory_gib()
    if not args.skip_dense and available_gib is not None and dense_gib > 0.8 * available_gib:
        raise SystemExit(
            f"the dense matrix needs {dense_gib:.1f} GiB but only {available_gib:.1f} GiB is available; "
            "rerun with --skip-dense to time streaming against the bare matrix products"
        )
    approaches = [a for a in APPROACHES if not (args.skip_dense and a == "dense")]
    results: dict[str, dict] = {}
    for _ in range(args.repeats):  # interleaved, so a busy spell on a shared machine slows every approach alike
        for approach in approaches:
            run = run_in_subprocess(approach, args)
            best = results.setdefault(approach, run)
            if run["seconds"] < best["seconds"]:
                results[approach] = {**run, "peak_rss_mib": max(run["peak_rss_mib"], best["peak_rss_mib"])}
    baseline = results["data only"]["peak_rss_mib"]
    bare = results["bare matmul"]["seconds"]
    header = (
        f"{'approach':<11} {'wall s':>8} {'x bare':>7} {'peak RSS MiB':>13} {'over data MiB':>14} "
        + " ".join(f"{'R@' + str(k):>8}" for k in KS)
    )
    print(header)
    print("-" * len(header))
    for approach in approaches:
        row = results[approach]
        recalls = " ".join(f"{row[f'recall@{k}']:>8.4f}" if f"recall@{k}" in row else f"{'-':>8}" for k in KS)
        ratio = f"{row['seconds'] / bare:>7.2f}" if approach != "data only" else f"{'-':>7}"
        print(
            f"{approach:<11} {row['seconds']:>8.2f} {ratio} {row['peak_rss_mib']:>13.0f} "
            f"{row['peak_rss_mib'] - baseline:>14.0f} {recalls}"
        )
    if args.skip_dense:
        return
    dense = results["dense"]
    print(
        f"streaming / dense: time {results['streaming']['seconds'] / dense['seconds']:.2f}x, memory over data "
        f"{(results['streaming']['peak_rss_mib'] - baseline) / (dense['peak_rss_mib'] - baseline):.1%}"
    )
    for k in KS:
        key = f"recall@{k}"
        assert results["streaming"][key] == results["dense"][key], (
            f"{key} differs: streaming {results['streaming'][key]} vs dense {results['dense'][key]}"
        )
    print("recalls identical: yes")


if __name__ == "__main__":
    main()
