"""Procedural scenes: 1-3 coloured shapes on a 3x3 grid, with captions, VQA questions and referring boxes.

The project's own image-language data, so an image-language model can be trained and evaluated end to end
without downloading anything. Every scene is a pure function of ``(seed, index)``: the same call writes the
same images and manifests on every machine. Within a scene all colours differ and all shapes differ, and
each shape sits in its own grid cell (so shapes never overlap; a shape's last column or row may be the pixel
that straddles its cell's right or bottom edge), which makes every question and referring expression
unambiguous by construction. Boxes are the bounding boxes of the pixels actually drawn.

Written per split folder (paths in the manifests are relative to it, as ``tasks.data.manifest`` resolves):

- ``images/NNNNNN.png``
- ``captions.jsonl``: ``image``, ``captions`` (positional caption first, then one without places)
- ``vqa.jsonl``: ``image``, ``question``, ``answers`` (the answer ten times, as VQAv2 scoring expects),
  ``question_type`` (colour, shape, place, count, exists); five questions per scene, one of each type
- ``grounding.jsonl``: ``image``, ``expression`` ("the red circle"), ``box`` (normalised xyxy); one row per shape
- ``instruct.jsonl``: every caption, VQA and grounding row of the split as ``instruction`` + ``target``, with
  the instruction equal to what the captioning / vqa / grounding task templates put after the image
  placeholder, and the grounding target spelled as PEVL position tokens (the text the model must generate)

CLI: ``python -m tasks.data.scenes OUT --n N --seed S [--image-size 64]``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 150, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 200, 0),
    "purple": (140, 40, 170),
    "orange": (250, 130, 0),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
    "brown": (120, 70, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "diamond")
ROWS: tuple[str, ...] = ("top", "centre", "bottom")
COLUMNS: tuple[str, ...] = ("left", "centre", "right")
BACKGROUND = (255, 255, 255)
MAX_SHAPES = 3
SIZE_RANGE = (0.17, 0.25)  # shape side as a fraction of the image side
MIN_IMAGE_SIZE = 40  # below this, rounding can push a shape's edge out of its grid cell
JITTER = 0.04  # largest centre offset from the cell centre, as a fraction of the image side
QUESTION_TYPES: tuple[str, ...] = ("colour", "shape", "place", "count", "exists")
VQA_ANSWERS = 10
GROUNDING_BINS = 512  # tasks/configs/grounding.yaml's metric_options.bins


def place_name(cell: int) -> str:
    """The tokenizer's place words for grid cell ``cell`` (0-8, row-major): "top left", "top", "centre"..."""
    row, column = ROWS[cell // 3], COLUMNS[cell % 3]
    if row == "centre" and column == "centre":
        return "centre"
    if row == "centre":
        return column
    if column == "centre":
        return row
    return f"{row} {column}"


@dataclass(frozen=True)
class Shape:
    """One drawn shape: its words, grid cell, and bounding box of its drawn pixels (pixels, exclusive x2/y2)."""

    colour: str
    shape: str
    cell: int
    box: tuple[int, int, int, int]

    @property
    def place(self) -> str:
        return place_name(self.cell)

    @property
    def expression(self) -> str:
        return f"the {self.colour} {self.shape}"

    def normalised_box(self, image_size: int) -> list[float]:
        return [round(v / image_size, 6) for v in self.box]


@dataclass(frozen=True)
class Scene:
    """A rendered scene: its image and its shapes in reading order (by grid cell)."""

    image: Image.Image
    shapes: tuple[Shape, ...]


def _outline(shape: str, cx: float, cy: float, half: float) -> list[tuple[float, float]]:
    """Polygon vertices of the polygonal shapes, centred on (cx, cy) within a square of half-side ``half``."""
    if shape == "square":
        return [
            (cx - half, cy - half),
            (cx + half, cy - half),
            (cx + half, cy + half),
            (cx - half, cy + half),
        ]
    if shape == "diamond":
        return [(cx, cy - half), (cx + half, cy), (cx, cy + half), (cx - half, cy)]
    if shape == "triangle":
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "cross":
        t = half / 3
        return [
            (cx - t, cy - half),
            (cx + t, cy - half),
            (cx + t, cy - t),
            (cx + half, cy - t),
            (cx + half, cy + t),
            (cx + t, cy + t),
            (cx + t, cy + half),
            (cx - t, cy + half),
            (cx - t, cy + t),
            (cx - half, cy + t),
            (cx - half, cy - t),
            (cx - t, cy - t),
        ]
    if shape == "star":
        import math

        points = []
        for k in range(10):
            radius = half if k % 2 == 0 else half * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(f"no outline for shape {shape!r}; shapes: {', '.join(SHAPES)}")


def _mask(shape: str, cx: float, cy: float, side: int, image_size: int) -> Image.Image:
    """A 1-bit-valued L mask of one shape (no anti-aliasing, so rendering is exact integer rasterisation)."""
    mask = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(mask)
    half = (side - 1) / 2
    bounds = [cx - half, cy - half, cx + half, cy + half]
    if shape == "circle":
        draw.ellipse(bounds, fill=255)
    elif shape == "ring":
        draw.ellipse(bounds, outline=255, width=max(2, side // 5))
    else:
        draw.polygon(_outline(shape, cx, cy, half), fill=255)
    return mask


def make_scene(seed: int, index: int, image_size: int = 64) -> Scene:
    """Scene ``index`` of the set generated with ``seed`` (independent of every other scene)."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be at least {MIN_IMAGE_SIZE} pixels so every shape fits inside its grid cell, got {image_size}"
        )
    rng = random.Random(f"scenes/{seed}/{index}")
    count = rng.randint(1, MAX_SHAPES)
    cells = sorted(rng.sample(range(9), count))
    colours = rng.sample(sorted(COLOURS), count)
    shapes = rng.sample(SHAPES, count)
    cell_side = image_size / 3
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    drawn = []
    for cell, colour, shape in zip(cells, colours, shapes, strict=True):
        side = rng.randint(round(SIZE_RANGE[0] * image_size), round(SIZE_RANGE[1] * image_size))
        room = min(JITTER * image_size, (cell_side - side) / 2)
        cx = (cell % 3 + 0.5) * cell_side + rng.uniform(-room, room)
        cy = (cell // 3 + 0.5) * cell_side + rng.uniform(-room, room)
        mask = _mask(shape, round(cx * 2) / 2, round(cy * 2) / 2, side, image_size)
        image.paste(COLOURS[colour], (0, 0), mask)
        drawn.append(Shape(colour, shape, cell, mask.getbbox()))
    return Scene(image, tuple(drawn))


def article(word: str) -> str:
    """The article, "a" or "an", to put before ``word``."""
    return "an" if word[0] in "aeiou" else "a"


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions(scene: Scene) -> list[str]:
    """The positional caption (reading order), then the same shapes without places."""
    placed = _join([f"{article(s.colour)} {s.colour} {s.shape} at the {s.place}" for s in scene.shapes])
    plain = _join([f"{article(s.colour)} {s.colour} {s.shape}" for s in scene.shapes])
    return [placed[0].upper() + placed[1:] + ".", plain[0].upper() + plain[1:] + "."]


def questions(scene: Scene, rng: random.Random) -> list[tuple[str, str, str]]:
    """One (type, question, answer) per question type, about a shape picked by ``rng``."""
    target = rng.choice(scene.shapes)
    present = {(s.colour, s.shape) for s in scene.shapes}
    if rng.random() < 0.5:
        asked, exists = (target.colour, target.shape), "yes"
    else:
        absent = sorted((c, s) for c in COLOURS for s in SHAPES if (c, s) not in present)
        asked, exists = rng.choice(absent), "no"
    return [
        ("colour", f"What colour is the {target.shape}?", target.colour),
        ("shape", f"What shape is at the {target.place}?", target.shape),
        ("place", f"Where is the {target.colour} {target.shape}?", target.place),
        ("count", "How many shapes are there?", str(len(scene.shapes))),
        ("exists", f"Is there {article(asked[0])} {asked[0]} {asked[1]}?", exists),
    ]


def box_tokens(box: Sequence[float]) -> str:
    """A normalised xyxy box as the position-token text the grounding metric decodes."""
    from tasks.metrics.grounding import encode_box_tokens

    return "".join(encode_box_tokens(box, bins=GROUNDING_BINS))


def scene_rows(
    scene: Scene, image: str, seed: int, index: int, image_size: int
) -> dict[str, list[dict[str, Any]]]:
    """The manifest rows of one scene, keyed by manifest name (without ``.jsonl``)."""
    rng = random.Random(f"questions/{seed}/{index}")
    texts = captions(scene)
    vqa = [
        {"image": image, "question": q, "answers": [a] * VQA_ANSWERS, "question_type": kind}
        for kind, q, a in questions(scene, rng)
    ]
    grounding = [
        {"image": image, "expression": s.expression, "box": s.normalised_box(image_size)}
        for s in scene.shapes
    ]
    instruct = [
        {"image": image, "kind": "captioning", "instruction": "Describe the image.", "target": " " + texts[0]}
    ]
    instruct += [
        {
            "image": image,
            "kind": "vqa",
            "instruction": f"Question: {r['question']} Answer:",
            "target": " " + r["answers"][0],
        }
        for r in vqa
    ]
    instruct += [
        {
            "image": image,
            "kind": "grounding",
            "instruction": f"Where is {r['expression']}? Box:",
            "target": " " + box_tokens(r["box"]),
        }
        for r in grounding
    ]
    return {
        "captions": [{"image": image, "captions": texts}],
        "vqa": vqa,
        "grounding": grounding,
        "instruct": instruct,
    }


def generate_scenes(out_dir: str | Path, n: int, seed: int, image_size: int = 64) -> dict[str, int]:
    """Write ``n`` scenes (images and the manifests above) into ``out_dir``; returns rows per manifest."""
    if n < 1:
        raise ValueError(f"n must be at least 1 scene, got {n}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = {"captions": [], "vqa": [], "grounding": [], "instruct": []}
    for index in range(n):
        scene = make_scene(seed, index, image_size)
        image = f"images/{index:06d}.png"
        scene.image.save(out / image, format="PNG", optimize=False, compress_level=6)
        for name, new in scene_rows(scene, image, seed, index, image_size).items():
            rows[name].extend(new)
    for name, manifest in rows.items():
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in manifest)
        (out / f"{name}.jsonl").write_text(text, encoding="utf-8")
    return {name: len(manifest) for name, manifest in rows.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a procedural scene set (images + manifests).")
    parser.add_argument("out", help="output folder (one split)")
    parser.add_argument("--n", type=int, required=True, help="number of scenes")
    parser.add_argument(
        "--seed", type=int, required=True, help="seed; scenes are a pure function of (seed, index)"
    )
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    args = parser.parse_args(argv)
    counts = generate_scenes(args.out, args.n, args.seed, args.image_size)
    print(f"wrote {args.n} scenes to {args.out}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))


if __name__ == "__main__":
    main()
