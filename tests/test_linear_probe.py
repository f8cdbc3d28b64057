"""linear-probe task kind: MoleculeNet-style probes through zoo.evaluate; pretrained GNNs must beat random init."""

from __future__ import annotations

import csv
from pathlib import Path

import zoo
from zoo.evaluation.evaluate import evaluate

TINY_GCN = {"type": "encoder", "modality": "molecule_graph",
            "encoder": {"type": "gnn", "config": {"gnn_type": "gcn", "num_layers": 2, "hidden_size": 16}}}


def test_probe_runs_end_to_end_and_counts_unparsable_molecules(tmp_path):
    import numpy as np

    rng = np.random.RandomState(0)
    scaffolds = ["c1ccccc1", "C1CCCCC1", "c1ccncc1", "C1CCOC1", "c1ccsc1", "C1CCNCC1", "c1ccc2ccccc2c1", "C1CC1"]
    rows = [{"smiles": f"{s}{'C' * k}", "active": int(k % 2), "toxic": "" if k == 3 else int(rng.rand() > 0.5)}
            for s in scaffolds for k in range(1, 7)]
    rows.append({"smiles": "C1CC", "active": 1, "toxic": 0})  # unparsable: counted, not dropped
    with open(tmp_path / "mols.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["smiles", "active", "toxic"])
        writer.writeheader()
        writer.writerows(rows)
    results = evaluate(zoo.build(TINY_GCN), "linear-probe", tmp_path / "mols.csv", output_dir=tmp_path / "out", progress=False)
    assert results["metrics"]["num_tasks"] == 2 and 0.0 <= results["metrics"]["test_roc_auc"] <= 1.0
    assert results["num_failed"] == 1 and "C1CC" in results["failures"][0]["error"]
    assert results["rows"][-1]["prediction"] == "test split"  # the failed molecule sits in the test split
    assert (tmp_path / "out" / "report.html").is_file()


def test_pretrained_gcn_beats_random_init_on_bbbp(shared_dir: Path, tmp_path, monkeypatch):
    """Hu et al.: pre-training helps GCN. If the pretrained probe is no better than random init, the port is wrong."""
    monkeypatch.setenv("MODALZOO_CACHE", str(tmp_path))
    name = "pretrain-gnns-gcn-supervised-contextpred"
    data = shared_dir / "data" / "moleculenet" / "bbbp.csv"
    pretrained = zoo.load(name, weights_dir=shared_dir / "data" / "weights" / "pretrain-gnns")
    ours = evaluate(pretrained, "linear-probe", data, progress=False, report=False, batch_size=512)
    random = evaluate(zoo.build(name), "linear-probe", data, progress=False, report=False, batch_size=512)
    assert ours["metrics"]["test_roc_auc"] > random["metrics"]["test_roc_auc"] + 0.05, (ours["metrics"], random["metrics"])
