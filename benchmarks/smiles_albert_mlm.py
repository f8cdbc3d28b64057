"""Masked-token accuracy of rxnmapper's reaction ALBERT on USPTO-50K test reactions.

Each reaction ``reactants>>product`` (from ``tgt-test.txt`` / ``src-test.txt`` in ``../shared/data/uspto50k``)
is tokenized by our SMILES processor; 15% of its tokens (at least one, never [CLS]/[SEP], chosen with a
seeded generator) are replaced by [MASK], and the checkpoint's own masked-LM head predicts them. Accuracy
is top-1 over all masked tokens. It checks that the weights, vocabulary and tokenizer fit together: a
mismatch drives accuracy towards chance.

    .venv/bin/python benchmarks/smiles_albert_mlm.py [--limit N] [--mask-rate 0.15] [--seed 0]

All 5,004 reactions take about 3.5 CPU-minutes on 2 cores (``--limit 1000``: under a minute). With rxnmapper
0.4.3, seed 0: 0.9880 (68,066 of 68,893 masked tokens), against 0.2463 for always predicting 'c'.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place (shared helpers are then benchmarks._measure).
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import shlex
import time
from collections import Counter

import torch
from transformers import AutoModelForMaskedLM

from encoders.smiles import RXNMAPPER_ALBERT, HFSmilesConfig, HFSmilesProcessor, find_rxnmapper_albert

USPTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "uspto50k"


def read_test_reactions(folder: Path) -> list[str]:
    """``reactants>>product`` SMILES of the test split, spaces and the ``<RX_n>`` class token removed."""
    reactants = (folder / "tgt-test.txt").read_text().splitlines()
    products = (folder / "src-test.txt").read_text().splitlines()
    return [
        "".join(r.split()) + ">>" + "".join(p.split()[1:]) for r, p in zip(reactants, products, strict=True)
    ]


def mask_tokens(
    input_ids: torch.Tensor, maskable: torch.Tensor, rate: float, mask_id: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``max(1, round(rate * n))`` random maskable tokens per row; returns (masked ids, masked positions)."""
    chosen = torch.zeros_like(maskable)
    for row, candidates in enumerate(maskable):
        positions = candidates.nonzero().squeeze(1)
        count = max(1, round(rate * len(positions)))
        chosen[row, positions[torch.randperm(len(positions), generator=generator)[:count]]] = True
    return input_ids.masked_fill(chosen, mask_id), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N test reactions (default: all 5,004)")
    parser.add_argument("--mask-rate", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if not USPTO.is_dir():
        sys.exit(f"USPTO-50K not found at {USPTO} (it lives in ../shared on project machines)")

    reactions = read_test_reactions(USPTO)[: args.limit]
    reactions.sort(key=len)  # similar lengths per batch: less padding
    config = HFSmilesConfig(pretrained=RXNMAPPER_ALBERT)
    processor = HFSmilesProcessor(config)
    folder = find_rxnmapper_albert()
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()  # the checkpoint includes its MLM head
    tokenizer = processor.tokenizer
    generator = torch.Generator().manual_seed(args.seed)

    start = time.perf_counter()
    correct = total = truncated = unknown = 0
    targets = Counter()
    for i in range(0, len(reactions), args.batch_size):
        batch = processor(reactions[i : i + args.batch_size])
        ids, attention = batch.inputs["input_ids"], batch.inputs["attention_mask"]
        truncated += sum(size > config.max_length for size in batch.sizes)
        unknown += int((ids == tokenizer.unk_token_id).sum())
        maskable = attention.bool() & (ids != tokenizer.cls_token_id) & (ids != tokenizer.sep_token_id)
        masked_ids, chosen = mask_tokens(ids, maskable, args.mask_rate, tokenizer.mask_token_id, generator)
        with torch.inference_mode():
            logits = model(input_ids=masked_ids, attention_mask=attention).logits
        correct += int((logits.argmax(-1)[chosen] == ids[chosen]).sum())
        total += int(chosen.sum())
        targets.update(ids[chosen].tolist())
    seconds = time.perf_counter() - start

    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"model: rxnmapper ALBERT at {folder}")
    print(f"reactions: N={len(reactions)} (USPTO-50K test), truncated: {truncated}, [UNK] tokens: {unknown}")
    print(f"masked tokens: {total} ({args.mask_rate:.0%} per reaction, seed {args.seed})")
    print(f"masked-token accuracy: {correct / total:.4f} ({correct}/{total}) in {seconds:.1f} s")
    ((top_id, top_count),) = targets.most_common(1)
    print(f"baseline, always {tokenizer.convert_ids_to_tokens(top_id)!r}: {top_count / total:.4f}")


if __name__ == "__main__":
    main()
