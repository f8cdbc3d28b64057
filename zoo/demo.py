"""``zoo demo``: build a named model, run a batch through forward and generate, report what happened."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

SHAPE_PROMPTS = [
    ("a red circle", "<image> What colour is the circle?", "red"),
    ("a blue square", "<image> What colour is the square?", "blue"),
    ("a green triangle and a red circle", "<image> and <image> Which shapes are there?", "triangle and circle"),
]


def _shape_image(shape: str, colour: tuple[int, int, int], size: int = 64):  # -> PIL.Image
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(size // 2, size // 4), (size // 4, 3 * size // 4), (3 * size // 4, 3 * size // 4)], fill=colour)
    return image


def run_demo(name: str = "tiny-test-vlm") -> None:
    """Load ``name``, compute a training loss on three prompts (two images in one), then generate."""
    console = Console()
    start = time.perf_counter()
    import torch

    import zoo

    model = zoo.load(name)
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"loaded [bold]{name}[/] ({n_params:,} parameters) in {time.perf_counter() - start:.1f} s")
    images = [
        [_shape_image("circle", (220, 30, 30))],
        [_shape_image("square", (30, 30, 220))],
        [_shape_image("triangle", (30, 180, 30)), _shape_image("circle", (220, 30, 30))],
    ]
    prompts = [p for _, p, _ in SHAPE_PROMPTS]
    targets = [t for _, _, t in SHAPE_PROMPTS]
    batch = model.processor(prompts, {"image": images}, targets=targets)
    with torch.no_grad():
        loss = model(**batch).loss
    console.print(
        f"forward: batch of {len(prompts)} prompts, {sum(map(len, images))} images, "
        f"{batch['input_ids'].shape[1]} tokens per row; loss on answer tokens = {loss.item():.3f} "
        f"(random init: about ln(vocab) = {torch.log(torch.tensor(float(len(model.processor.tokenizer)))):.3f})"
    )
    started = time.perf_counter()
    answers = model.generate_text(prompts, {"image": images}, max_new_tokens=8, do_sample=False)
    table = Table(title=f"generate (greedy, 8 new tokens, {time.perf_counter() - started:.2f} s)")
    for column in ("scene", "prompt", "output (untrained model)"):
        table.add_column(column)
    for (scene, prompt, _), answer in zip(SHAPE_PROMPTS, answers, strict=True):
        table.add_row(scene, prompt, repr(answer))
    console.print(table)
    console.print(f"done in {time.perf_counter() - start:.1f} s")
