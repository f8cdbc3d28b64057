"""Baselines for the procedural audio scenes beside the ``audio-clip-tiny`` card, one run, the same test sets.

    .venv/bin/python benchmarks/audio_baselines.py [--root runs/audio-clip-scenes] [--model audio-clip-tiny]
        [--skip-model]

``--root`` holds the splits the card's commands write (``train``: seen, seed 0; ``test``: seen, seed 2;
``held-out``: held-out, seed 2; see the card). Rows:

- chance: a uniform guess among the 14 classes; for retrieval, a random ranking (exact expected recall);
- prior: always the most frequent training class (it is never a held-out class, so it scores 0 there);
- MFCC + logistic regression: 20 MFCCs and their deltas (torchaudio, 25 ms windows every 10 ms), mean and
  standard deviation over the clip, standardised, multinomial logistic regression on the training clips' labels
  (the first sound's class). It only knows the 11 seen classes. For retrieval it scores a caption by the
  probability it gives the caption's first sound (named in the caption's text), so it ranks by class alone;
- the model through ``zoo.evaluate`` with the task files and data of the card's commands: classification with
  the task's three prompts and with the card's prompt ("A {}.", the form of a one-sound training caption).

Classification is among all 14 classes (the generator's ``zero-shot-all-classes.yaml``): acc@1 and mean
per-class recall on the held-out split (the zero-shot target) and on the seen test split.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tasks.data.audio_scenes import CLASSES, SAMPLE_RATE  # noqa: E402
from tasks.data.scene_baselines import random_recall, read_manifest  # noqa: E402
from tasks.metrics.retrieval import bidirectional_retrieval_metrics  # noqa: E402

CLASS_NAMES = list(CLASSES)
CLASSIFICATION = ("held-out acc@1", "held-out mean/class", "seen acc@1", "seen mean/class")
RETRIEVAL = ("a->t R@1", "a->t R@5", "t->a R@1", "t->a R@5")
RETRIEVAL_KEYS = ("audio_to_text/recall@1", "audio_to_text/recall@5", "text_to_audio/recall@1", "text_to_audio/recall@5")
# the first class named in a caption is its first sound ("Two sounds: a low tone and three clicks.")
CLASS_IN_TEXT = re.compile("|".join(sorted(map(re.escape, CLASS_NAMES), key=len, reverse=True)))
PROMPTS: dict[str, dict[str, Any]] = {"task's prompts": {}, 'prompt "A {}."': {"class_templates": ["A {}."]}}


def mfcc_features(folder: Path, rows: list[dict[str, Any]]) -> np.ndarray:
    """``[N, 80]``: mean and standard deviation over time of 20 MFCCs and their deltas, one row per clip."""
    import torchaudio

    from encoders.audio.io import load_audio

    mfcc = torchaudio.transforms.MFCC(SAMPLE_RATE, n_mfcc=20, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 64})
    features = []
    for row in rows:
        coefficients = mfcc(load_audio(folder / row["audio"], SAMPLE_RATE))
        both = torch.cat([coefficients, torchaudio.functional.compute_deltas(coefficients)])
        features.append(torch.cat([both.mean(1), both.std(1)]).numpy())
    return np.stack(features)


def fit_probe(features: np.ndarray, labels: list[str]) -> Any:
    """Standardisation then multinomial logistic regression (scikit-learn, L2, C = 1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, labels)


def class_probabilities(probe: Any, features: np.ndarray) -> np.ndarray:
    """``[N, 14]`` probabilities over every class (0 for the classes the probe never saw)."""
    out = np.zeros((len(features), len(CLASS_NAMES)))
    out[:, [CLASS_NAMES.index(c) for c in probe.classes_]] = probe.predict_proba(features)
    return out


def classification(predicted: list[str], labels: list[str]) -> tuple[float, float]:
    """acc@1 and mean per-class recall (over the classes present in ``labels``)."""
    hits = [p == t for p, t in zip(predicted, labels, strict=True)]
    recalls = [np.mean([h for h, t in zip(hits, labels, strict=True) if t == c]) for c in sorted(set(labels))]
    return float(np.mean(hits)), float(np.mean(recalls))


def probe_retrieval(probabilities: np.ndarray, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Recall@k both ways when a clip-caption score is the probe's probability of the caption's first sound."""
    captions = [c for row in rows for c in row["captions"]]
    first = torch.zeros(len(captions), len(CLASS_NAMES), dtype=torch.float64)
    for i, caption in enumerate(captions):
        first[i, CLASS_NAMES.index(CLASS_IN_TEXT.search(caption.lower()).group())] = 1.0
    positives, start = [], 0
    for row in rows:
        positives.append(list(range(start, start + len(row["captions"]))))
        start += len(row["captions"])
    return bidirectional_retrieval_metrics(torch.from_numpy(probabilities), first, positives, names=("audio", "text"))


def _row(label: str, values: tuple[float | None, ...], seconds: float) -> None:
    cells = "".join(f"{'–' if v is None else f'{v:.3f}':>20}" for v in values)
    print(f"{label:<50}{cells}{seconds:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/audio-clip-scenes", help="folder with the train, test and held-out splits")
    parser.add_argument("--model", default="audio-clip-tiny", help="a card (or saved model) to score beside them")
    parser.add_argument("--skip-model", action="store_true", help="print the baselines only")
    args = parser.parse_args()
    root = Path(args.root)
    for split in ("train", "test", "held-out"):
        if not (root / split / "classification.jsonl").is_file():
            sys.exit(f"no {split} split under {root}; write it with the commands in model_cards/audio-clip-tiny.md")
    train, test, held = (read_manifest(root / s, "classification") for s in ("train", "test", "held-out"))
    captions = read_manifest(root / "test", "captions")
    print(f"{len(train)} training clips, {len(test)} seen test clips, {len(held)} held-out clips; "
          f"{len(CLASS_NAMES)} classes (chance 1/{len(CLASS_NAMES)})")

    print(f"\n{'zero-shot classification among all classes':<50}" + "".join(f"{c:>20}" for c in CLASSIFICATION)
          + f"{'seconds':>9}")
    chance = 1 / len(CLASS_NAMES)
    _row("chance: a uniform guess", (chance,) * 4, 0.0)
    prior = Counter(r["label"] for r in train).most_common(1)[0][0]
    _row(f"prior: always the most frequent class ({prior})",
         (*classification([prior] * len(held), [r["label"] for r in held]),
          *classification([prior] * len(test), [r["label"] for r in test])), 0.0)
    started = time.perf_counter()
    probe = fit_probe(mfcc_features(root / "train", train), [r["label"] for r in train])
    test_probabilities = class_probabilities(probe, mfcc_features(root / "test", test))
    held_probabilities = class_probabilities(probe, mfcc_features(root / "held-out", held))
    predict = lambda p: [CLASS_NAMES[i] for i in p.argmax(1)]  # noqa: E731
    _row("MFCC + logistic regression (trained on seen)",
         (*classification(predict(held_probabilities), [r["label"] for r in held]),
          *classification(predict(test_probabilities), [r["label"] for r in test])), time.perf_counter() - started)
    if not args.skip_model:
        import zoo

        model = zoo.load(args.model)
        for prompt, overrides in PROMPTS.items():
            started = time.perf_counter()
            metrics = {split: zoo.evaluate(model, root / split / "zero-shot-all-classes.yaml",
                                           root / split / "classification.jsonl", batch_size=64, progress=False,
                                           report=False, **overrides)["metrics"] for split in ("held-out", "test")}
            _row(f"{args.model} (zoo eval), {prompt}",
                 tuple(metrics[s][k] for s in ("held-out", "test") for k in ("acc@1", "mean_per_class_recall")),
                 time.perf_counter() - started)

    pairs = sum(len(r["captions"]) for r in captions)
    print(f"\n{f'retrieval, {len(captions)} clips and {pairs} captions':<50}" + "".join(f"{c:>20}" for c in RETRIEVAL)
          + f"{'seconds':>9}")
    per_clip = pairs // len(captions)
    _row("chance: a random ranking (exact)",
         (random_recall(pairs, per_clip, 1), random_recall(pairs, per_clip, 5),
          random_recall(len(captions), 1, 1), random_recall(len(captions), 1, 5)), 0.0)
    if [r["audio"] for r in captions] != [r["audio"] for r in test]:
        sys.exit(f"{root / 'test'}: captions.jsonl and classification.jsonl list different clips; regenerate the split")
    started = time.perf_counter()
    metrics = probe_retrieval(test_probabilities, captions)
    _row("MFCC probe: captions scored by their first sound", tuple(metrics[k] for k in RETRIEVAL_KEYS),
         time.perf_counter() - started)
    if not args.skip_model:
        started = time.perf_counter()
        metrics = zoo.evaluate(model, "audio-retrieval", root / "test" / "captions.jsonl", batch_size=64,
                               progress=False, report=False)["metrics"]
        _row(f"{args.model} (zoo eval)", tuple(metrics[k] for k in RETRIEVAL_KEYS), time.perf_counter() - started)
    print("\ntargets (issue 17): held-out acc@1 >= 3x chance (0.214); audio -> text R@1 >= 0.5 over 500 clips")


if __name__ == "__main__":
    main()
