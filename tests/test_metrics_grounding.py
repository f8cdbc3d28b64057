"""Box formats and units, IoU, Acc@IoU and PEVL-style position tokens."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.metrics import (
    accuracy_at_iou,
    box_iou,
    convert_boxes,
    decode_box_tokens,
    encode_box_tokens,
    paired_iou,
)


def test_format_and_unit_conversions_hand_computed() -> None:
    xywh = [[10.0, 20.0, 30.0, 40.0]]
    assert convert_boxes(xywh, "xywh", "xyxy").tolist() == [[10.0, 20.0, 40.0, 60.0]]
    assert convert_boxes(xywh, "xywh", "cxcywh").tolist() == [[25.0, 40.0, 30.0, 40.0]]
    normalised = convert_boxes(xywh, "xywh", "xyxy", dst_units="normalized", image_size=(100, 200))
    assert normalised[0].tolist() == pytest.approx([0.1, 0.1, 0.4, 0.3])
    back = convert_boxes(normalised, "xyxy", "xywh", src_units="normalized", image_size=(100, 200))
    assert back[0].tolist() == pytest.approx(xywh[0])


def test_conversion_errors_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="needs image_size"):
        convert_boxes([[0, 0, 1, 1]], "xyxy", "xyxy", dst_units="normalized")
    with pytest.raises(ValueError, match="unknown source format 'yxyx'"):
        convert_boxes([[0, 0, 1, 1]], "yxyx", "xyxy")
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        convert_boxes([[0, 0, 1]], "xyxy", "xywh")


_coord = st.floats(0, 500, allow_nan=False, allow_infinity=False)


@st.composite
def _xyxy_boxes(draw: st.DrawFn) -> torch.Tensor:
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        x1, x2 = sorted((draw(_coord), draw(_coord)))
        y1, y2 = sorted((draw(_coord), draw(_coord)))
        rows.append([x1, y1, x2, y2])
    return torch.tensor(rows, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(_xyxy_boxes(), st.sampled_from(["xyxy", "xywh", "cxcywh"]), st.sampled_from(["pixels", "normalized"]))
def test_conversion_round_trips(boxes: torch.Tensor, fmt: str, units: str) -> None:
    size = (640, 480)
    there = convert_boxes(boxes, "xyxy", fmt, dst_units=units, image_size=size)
    back = convert_boxes(there, fmt, "xyxy", src_units=units, image_size=size)
    torch.testing.assert_close(back, boxes, atol=1e-9, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(_xyxy_boxes(), _xyxy_boxes())
def test_paired_iou_matches_torchvision_diagonal(a: torch.Tensor, b: torch.Tensor) -> None:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    expected = torch.nan_to_num(
        box_iou(a, b).diagonal(), nan=0.0
    )  # torchvision gives 0/0 for two empty boxes
    torch.testing.assert_close(paired_iou(a, b), expected)


def test_iou_and_accuracy_hand_computed() -> None:
    assert box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]]).item() == pytest.approx(1 / 7)  # 1 / (4 + 4 - 1)
    predicted = [[0, 0, 2, 2], [10, 10, 11, 11]]
    target = [[0, 0, 2, 1], [0, 0, 1, 1]]  # IoU 2/4 = 0.5 (counts, >=) and 0
    assert paired_iou(predicted, target).tolist() == [0.5, 0.0]
    assert accuracy_at_iou(predicted, target) == 0.5
    assert accuracy_at_iou(predicted, target, threshold=0.6) == 0.0
    with pytest.raises(ValueError, match="predicted has 2 items but target has 1"):
        accuracy_at_iou(predicted, target[:1])
    with pytest.raises(ValueError, match="x2 < x1"):
        accuracy_at_iou([[5, 0, 1, 1]], [[0, 0, 1, 1]])


def test_position_tokens_hand_computed() -> None:
    assert encode_box_tokens([0.0, 0.5, 0.999, 1.0]) == ["<pos_0>", "<pos_256>", "<pos_511>", "<pos_511>"]
    assert encode_box_tokens([0.1, 0.2, 0.3, 0.4], bins=10) == ["<pos_1>", "<pos_2>", "<pos_3>", "<pos_4>"]
    text = "the dog <pos_0><pos_256> and <pos_511> <pos_511> ##"
    assert decode_box_tokens(text) == [0.5 / 512, 256.5 / 512, 511.5 / 512, 511.5 / 512]


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["<pos_1>", "<pos_x>", "<pos_3>", "<pos_4>"], "malformed position token '<pos_x>'"),
        (["<pos_1>", "<pos_2>", "<pos_3>"], "expected 4 position tokens, got 3"),
        ("only <pos_1> <pos_2>", "found 2"),
        (["<pos_1>", "<pos_2>", "<pos_3>", "<pos_512>"], "must be below bins=512"),
        (["<pos_5>", "<pos_2>", "<pos_3>", "<pos_4>"], "x2 < x1"),
    ],
)
def test_malformed_position_tokens_raise(tokens, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_box_tokens(tokens)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 511), min_size=4, max_size=4))
def test_tokens_round_trip(indices: list[int]) -> None:
    x1, x2 = sorted(indices[0::2])
    y1, y2 = sorted(indices[1::2])
    tokens = [f"<pos_{i}>" for i in (x1, y1, x2, y2)]
    assert encode_box_tokens(decode_box_tokens(tokens)) == tokens
