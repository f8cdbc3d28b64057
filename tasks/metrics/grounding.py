"""Visual grounding: box formats and units, IoU, Acc@IoU, and PEVL-style discretised position tokens.

Formats: ``xyxy`` (corners), ``xywh`` (top-left corner, width, height), ``cxcywh`` (centre, width,
height). Units: ``pixels`` or ``normalized`` (divided by the image width / height, so in [0, 1]).
IoU and accuracy take ``xyxy`` boxes in the same units for prediction and ground truth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torchvision.ops import box_convert
from torchvision.ops import box_iou as _torchvision_box_iou

from tasks.metrics._validation import check_finite_values, check_not_empty, check_same_length

BOX_FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh")
UNITS: tuple[str, ...] = ("pixels", "normalized")
POSITION_TOKEN = "<pos_{}>"
_POSITION_TOKEN_RE = re.compile(r"<pos_(\d+)>")


def _as_boxes(name: str, boxes: torch.Tensor | Sequence[Sequence[float]]) -> torch.Tensor:
    boxes = torch.as_tensor(boxes, dtype=torch.float64 if not isinstance(boxes, torch.Tensor) else None)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4], got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        boxes = boxes.double()
    check_finite_values(name, boxes)
    return boxes


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")


def convert_boxes(
    boxes: torch.Tensor | Sequence[Sequence[float]],
    src: str,
    dst: str,
    *,
    src_units: str = "pixels",
    dst_units: str = "pixels",
    image_size: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Convert ``[N, 4]`` boxes between formats and units; ``image_size=(width, height)`` is needed
    whenever the units change."""
    _check_choice("source format", src, BOX_FORMATS)
    _check_choice("target format", dst, BOX_FORMATS)
    _check_choice("source units", src_units, UNITS)
    _check_choice("target units", dst_units, UNITS)
    boxes = _as_boxes("boxes", boxes)
    out = box_convert(boxes, in_fmt=src, out_fmt=dst)
    if src_units != dst_units:
        if image_size is None:
            raise ValueError(f"converting {src_units} to {dst_units} needs image_size=(width, height)")
        width, height = image_size
        if width <= 0 or height <= 0:
            raise ValueError(f"image_size must be positive (width, height), got {image_size}")
        scale = torch.tensor([width, height, width, height], dtype=out.dtype, device=out.device)
        out = out / scale if dst_units == "normalized" else out * scale
    return out


def _check_xyxy(name: str, boxes: torch.Tensor) -> None:
    bad = ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).nonzero().flatten()
    if len(bad):
        raise ValueError(
            f"{name} rows {bad[:10].tolist()} have x2 < x1 or y2 < y1; pass xyxy boxes (convert_boxes "
            "converts from xywh / cxcywh)"
        )


def box_iou(
    first: torch.Tensor | Sequence[Sequence[float]], second: torch.Tensor | Sequence[Sequence[float]]
) -> torch.Tensor:
    """Pairwise IoU ``[N, M]`` of two sets of ``xyxy`` boxes (``torchvision.ops.box_iou``)."""
    first, second = _as_boxes("first", first), _as_boxes("second", second)
    _check_xyxy("first", first)
    _check_xyxy("second", second)
    return _torchvision_box_iou(first, second)


def paired_iou(
    predicted: torch.Tensor | Sequence[Sequence[float]], target: torch.Tensor | Sequence[Sequence[float]]
) -> torch.Tensor:
    """IoU of each predicted ``xyxy`` box with the target box in the same row, ``[N]``.

    Two empty (zero-area) boxes have IoU 0.
    """
    predicted, target = _as_boxes("predicted", predicted), _as_boxes("target", target)
    check_same_length("predicted", predicted, "target", target)
    _check_xyxy("predicted", predicted)
    _check_xyxy("target", target)
    top_left = torch.maximum(predicted[:, :2], target[:, :2])
    bottom_right = torch.minimum(predicted[:, 2:], target[:, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area_p = (predicted[:, 2:] - predicted[:, :2]).prod(dim=1)
    area_t = (target[:, 2:] - target[:, :2]).prod(dim=1)
    union = area_p + area_t - intersection
    nonempty = union > 0
    return torch.where(nonempty, intersection / torch.where(nonempty, union, torch.ones_like(union)), 0.0)


def accuracy_at_iou(
    predicted: torch.Tensor | Sequence[Sequence[float]],
    target: torch.Tensor | Sequence[Sequence[float]],
    threshold: float = 0.5,
) -> float:
    """Fraction of predictions whose IoU with their target box is >= ``threshold`` (Acc@0.5 by default)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    ious = paired_iou(predicted, target)
    check_not_empty("predicted", ious)
    return (ious >= threshold).double().mean().item()


def encode_box_tokens(box: Sequence[float], bins: int = 512) -> list[str]:
    """Position tokens ``["<pos_i>", ...]`` for a normalised ``xyxy`` box, as PEVL discretises boxes.

    Each coordinate c in [0, 1] goes to bin ``min(floor(c * bins), bins - 1)`` (PEVL computes
    ``int(x * 512 / size)`` capped at 511 and spells tokens ``[pos_i]``).
    """
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    coords = [float(c) for c in box]
    if len(coords) != 4:
        raise ValueError(f"box must have 4 coordinates (x1, y1, x2, y2), got {len(coords)}")
    if not all(0.0 <= c <= 1.0 for c in coords):
        raise ValueError(
            f"box {coords} is not normalised to [0, 1]; convert_boxes(..., dst_units='normalized')"
        )
    if coords[2] < coords[0] or coords[3] < coords[1]:
        raise ValueError(f"box {coords} has x2 < x1 or y2 < y1; pass xyxy")
    return [POSITION_TOKEN.format(min(int(c * bins), bins - 1)) for c in coords]


def decode_box_tokens(tokens_or_text: str | Sequence[str], bins: int = 512) -> list[float]:
    """Normalised ``xyxy`` box from four position tokens (a list, or text containing them).

    Each bin decodes to its centre, ``(i + 0.5) / bins``. Raises on anything other than exactly four
    well-formed tokens with indices below ``bins`` and x1 <= x2, y1 <= y2.
    """
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    if isinstance(tokens_or_text, str):
        indices = [int(i) for i in _POSITION_TOKEN_RE.findall(tokens_or_text)]
        if len(indices) != 4:
            raise ValueError(
                f"expected 4 position tokens like '<pos_12>' in {tokens_or_text!r}, found {len(indices)}"
            )
    else:
        tokens = list(tokens_or_text)
        if len(tokens) != 4:
            raise ValueError(f"expected 4 position tokens, got {len(tokens)}: {tokens}")
        indices = []
        for token in tokens:
            match = _POSITION_TOKEN_RE.fullmatch(token) if isinstance(token, str) else None
            if match is None:
                raise ValueError(f"malformed position token {token!r}; expected the form '<pos_12>'")
            indices.append(int(match.group(1)))
    if any(i >= bins for i in indices):
        raise ValueError(f"position indices {indices} must be below bins={bins}")
    if indices[2] < indices[0] or indices[3] < indices[1]:
        raise ValueError(f"position tokens {indices} give x2 < x1 or y2 < y1; expected x1 y1 x2 y2 order")
    return [(i + 0.5) / bins for i in indices]
