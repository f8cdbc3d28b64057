"""Trivial baselines for the procedural scenes, so a trained model's numbers have a floor to be read against.

Each baseline looks at the training split only (never at a test image) and is scored on a test split with
the same metric functions ``zoo eval`` uses:

- VQA: the most common training answer of each question type (a question-only prior), VQAv2 accuracy.
- Grounding: one box of the mean training width and height, centred in the image, Acc@IoU>=0.5.
- Captioning: the most common training caption for every image, the captioning metrics.
- Retrieval: random ranking, whose expected R@k is exact (no sampling).

CLI: ``python -m tasks.data.scene_baselines TRAIN_DIR TEST_DIR`` prints the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from math import comb
from pathlib import Path
from typing import Any


def read_manifest(folder: str | Path, name: str) -> list[dict[str, Any]]:
    """The rows of ``folder/name.jsonl`` as written by ``tasks.data.scenes``."""
    path = Path(folder) / f"{name}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; write the split with `python -m tasks.data.scenes {folder} ...`"
        )
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def vqa_prior(train: list[dict[str, Any]]) -> dict[str, str]:
    """Most common answer per question type (ties: the alphabetically first answer)."""
    counts: dict[str, Counter[str]] = {}
    for row in train:
        counts.setdefault(row["question_type"], Counter())[row["answers"][0]] += 1
    return {kind: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for kind, c in counts.items()}


def vqa_prior_accuracy(train: list[dict[str, Any]], test: list[dict[str, Any]]) -> float:
    """VQAv2 accuracy on ``test`` of answering every question with its type's training prior."""
    from tasks.metrics import vqa_accuracy

    prior = vqa_prior(train)
    return sum(vqa_accuracy(prior.get(r["question_type"], ""), r["answers"]) for r in test) / len(test)


def centre_box(train: list[dict[str, Any]]) -> list[float]:
    """A normalised xyxy box of the mean training size, centred in the image."""
    width = sum(r["box"][2] - r["box"][0] for r in train) / len(train)
    height = sum(r["box"][3] - r["box"][1] for r in train) / len(train)
    return [0.5 - width / 2, 0.5 - height / 2, 0.5 + width / 2, 0.5 + height / 2]


def centre_box_accuracy(
    train: list[dict[str, Any]], test: list[dict[str, Any]], threshold: float = 0.5
) -> float:
    """Acc@IoU>=``threshold`` on ``test`` of predicting :func:`centre_box` for every expression."""
    from tasks.metrics import accuracy_at_iou

    box = centre_box(train)
    return accuracy_at_iou([box] * len(test), [r["box"] for r in test], threshold)


def constant_caption_metrics(train: list[dict[str, Any]], test: list[dict[str, Any]]) -> dict[str, float]:
    """Captioning metrics on ``test`` of giving every image the most common training caption."""
    from tasks.metrics import caption_metrics

    caption = Counter(r["captions"][0] for r in train).most_common(1)[0][0]
    return caption_metrics([caption] * len(test), [r["captions"] for r in test])


def random_recall(candidates: int, positives: int, k: int) -> float:
    """Expected R@k (hit semantics) of a random ranking of ``candidates`` with ``positives`` right ones."""
    return 1 - comb(candidates - positives, k) / comb(candidates, k)


def baselines(train_dir: str | Path, test_dir: str | Path) -> dict[str, Any]:
    """Every baseline above, fitted on ``train_dir`` and scored on ``test_dir``."""
    test_captions = read_manifest(test_dir, "captions")
    images, per_image = len(test_captions), len(test_captions[0]["captions"])
    return {
        "vqa_prior": vqa_prior(read_manifest(train_dir, "vqa")),
        "vqa_accuracy": vqa_prior_accuracy(read_manifest(train_dir, "vqa"), read_manifest(test_dir, "vqa")),
        "centre_box": centre_box(read_manifest(train_dir, "grounding")),
        "accuracy_at_iou_0.5": centre_box_accuracy(
            read_manifest(train_dir, "grounding"), read_manifest(test_dir, "grounding")
        ),
        "captioning": constant_caption_metrics(read_manifest(train_dir, "captions"), test_captions),
        "retrieval": {
            f"image_to_text/recall@{k}": random_recall(images * per_image, per_image, k) for k in (1, 5, 10)
        }
        | {f"text_to_image/recall@{k}": random_recall(images, 1, k) for k in (1, 5, 10)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Trivial baselines for a procedural scene test split.")
    parser.add_argument("train", help="training split folder (the baselines' only source)")
    parser.add_argument("test", help="test split folder")
    args = parser.parse_args()
    print(json.dumps(baselines(args.train, args.test), indent=2))


if __name__ == "__main__":
    main()
