"""Proof that the pretrain-gnns port is right: MoleculeNet probes, pretrained vs random init.

Frozen mean-pooled features -> linear probe (multi-task logistic regression, L2 picked on validation) on
BBBP, BACE, ClinTox, Tox21 and SIDER with the Bemis–Murcko scaffold split (80/10/10); test ROC-AUC averaged
over tasks. Random init uses 3 seeds; the pretrained probe is deterministic (the same number each seed).
``--finetune-epochs N`` adds a short full fine-tune (encoder + linear head, best validation epoch).
Hu et al. (ICLR 2020) report that pre-training helps GCN and GraphSAGE; if ours shows no gain, the port is wrong.

    .venv/bin/python benchmarks/moleculenet_probe.py [--models pretrain-gnns-gcn-contextpred ...]
        [--datasets bbbp bace ...] [--seeds 0 1 2] [--finetune-epochs 0] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place (shared helpers are then benchmarks._measure).
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse
import copy
import json
import time

import numpy as np
import torch

import zoo
from zoo.evaluation.probe import embed_items, linear_probe, scaffold_splits_keeping_failures

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = {  # file, SMILES column, label columns (None = every other column)
    "bbbp": ("bbbp.csv", "smiles", ["p_np"]),
    "bace": ("bace.csv", "mol", ["Class"]),
    "clintox": ("clintox.csv", "smiles", ["FDA_APPROVED", "CT_TOX"]),
    "tox21": ("tox21.csv", "smiles", None),
    "sider": ("sider.csv", "smiles", None),
}
MODELS = [
    "pretrain-gnns-gcn-contextpred",
    "pretrain-gnns-gcn-supervised-contextpred",
    "pretrain-gnns-graphsage-supervised-contextpred",
    "pretrain-gnns-gat-supervised-contextpred",
]


def read_dataset(name: str) -> tuple[list[str], np.ndarray]:
    """SMILES and a float label matrix with NaN for missing labels."""
    import csv

    file, smiles_column, label_columns = DATASETS[name]
    with open(SHARED / "moleculenet" / file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = label_columns or [c for c in rows[0] if c != smiles_column]
    labels = np.array([[float(r[c]) if r[c] != "" else np.nan for c in columns] for r in rows], dtype=np.float64)
    return [r[smiles_column] for r in rows], labels


def finetune_probe(model, features_input, labels, splits, failed, epochs: int, seed: int) -> float:
    """Encoder + linear head trained end to end with masked BCE; test ROC-AUC at the best validation epoch."""
    from tasks.metrics import multitask_roc_auc
    from zoo.processing import move_to

    torch.manual_seed(seed)
    model = copy.deepcopy(model).train()
    head = torch.nn.Linear(model.hidden_size, labels.shape[1])
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    train, valid, test = splits
    usable = [i for i in train if i not in failed]
    y = torch.tensor(labels, dtype=torch.float32)

    def predict(rows: list[int]) -> np.ndarray:
        model.eval()
        out = np.full((len(rows), labels.shape[1]), 0.5)
        good = [k for k, i in enumerate(rows) if i not in failed]
        with torch.no_grad():
            for start in range(0, len(good), 256):
                part = good[start : start + 256]
                batch = model.processor(model.modality, [features_input[rows[k]] for k in part]).inputs
                out[part] = torch.sigmoid(head(model(**move_to(dict(batch), model.device)).pooled)).numpy()
        model.train()
        return out

    best = (-1.0, 0.0)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = [usable[i] for i in torch.randperm(len(usable), generator=generator)]
        for start in range(0, len(order), 32):
            rows = order[start : start + 32]
            batch = model.processor(model.modality, [features_input[i] for i in rows]).inputs
            logits = head(model(**move_to(dict(batch), model.device)).pooled)
            target = y[rows]
            present = ~torch.isnan(target)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[present], target[present])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        valid_auc = multitask_roc_auc(labels[valid], predict(valid)).mean
        if valid_auc > best[0]:
            best = (valid_auc, multitask_roc_auc(labels[test], predict(test)).mean)
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    weights_dir = SHARED / "weights" / "pretrain-gnns"
    if not weights_dir.is_dir():
        sys.exit(f"skipped: {weights_dir} not found (the shared data exists only on project machines)")
    from encoders.molecule import featurize_many

    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    started = time.time()
    for dataset in args.datasets:
        smiles, labels = read_dataset(dataset)
        graphs = featurize_many(smiles, scheme="pretrain-gnns")
        failed = {e.index: e.message for e in graphs.errors}
        items = [g if g is not None else s for g, s in zip(graphs.graphs, smiles, strict=True)]
        splits = scaffold_splits_keeping_failures(smiles, failed)
        print(f"{dataset}: {len(smiles)} molecules, {labels.shape[1]} task(s), {len(failed)} unparsable "
              f"(kept in test, scored 0.5), split {tuple(len(s) for s in splits)}", flush=True)
        for name in args.models:
            pretrained = zoo.load(name, weights_dir=weights_dir)
            row = results.setdefault(name, {}).setdefault(dataset, {"pretrained": [], "random": []})
            features, _ = embed_items(pretrained, items)
            pretrained_auc = linear_probe(features, labels, splits, failed).test_roc_auc
            for seed in args.seeds:
                spec = {**zoo.card(name).spec, "seed": seed}
                random_model = zoo.build(spec).eval()
                random_features, _ = embed_items(random_model, items)
                row["pretrained"].append(pretrained_auc)
                row["random"].append(linear_probe(random_features, labels, splits, failed).test_roc_auc)
                if args.finetune_epochs:
                    row.setdefault("pretrained_finetune", []).append(
                        finetune_probe(pretrained, items, labels, splits, failed, args.finetune_epochs, seed))
                    row.setdefault("random_finetune", []).append(
                        finetune_probe(random_model, items, labels, splits, failed, args.finetune_epochs, seed))
            summary = "  ".join(f"{k} {np.mean(v):.3f}±{np.std(v):.3f}" for k, v in row.items())
            print(f"  {name}: {summary}  [{time.time() - started:.0f} s]", flush=True)
            if args.json:  # after every model and dataset, so a run cut short keeps what it measured
                args.json.write_text(json.dumps(results, indent=2))
    print_table(results, args.datasets)


def print_table(results: dict, datasets: list[str]) -> None:
    """Markdown table: test ROC-AUC ×100, mean ± std over seeds, pretrained vs random init."""
    print("\n| model | setting | " + " | ".join(datasets) + " | mean |")
    print("|---|---|" + "---|" * (len(datasets) + 1))
    for name, per_dataset in results.items():
        for setting in per_dataset[datasets[0]]:
            means = [100 * np.mean(per_dataset[d][setting]) for d in datasets]
            cells = [f"{100 * np.mean(per_dataset[d][setting]):.1f} ± {100 * np.std(per_dataset[d][setting]):.1f}" for d in datasets]
            print(f"| {name} | {setting} | " + " | ".join(cells) + f" | {np.mean(means):.1f} |")


if __name__ == "__main__":
    main()
