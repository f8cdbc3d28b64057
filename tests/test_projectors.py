"""Projector library: the token-count contract per item, padding never leaking, exact pooling values,
window isolation, config validation, and every projector driving a MultimodalLM end to end."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo
from projectors.base import Projector, ProjectorConfig
from projectors.perceiver import PerceiverConfig, PerceiverResampler
from projectors.pooling import AvgPoolConfig, AvgPoolLinearProjector
from projectors.qformer import QFormerConfig, QFormerProjector, WindowQFormerConfig, WindowQFormerProjector
from projectors.simple import (
    IdentityConfig,
    IdentityProjector,
    LinearConfig,
    LinearProjector,
    MLPConfig,
    MLPProjector,
)
from projectors.star import StarMLPConfig, StarMLPProjector
from tests.helpers import image
from zoo.spec import SpecError

IN_DIM, OUT_DIM = 8, 12
TINY_QFORMER = {"num_layers": 2, "num_heads": 2, "hidden_size": 8, "intermediate_size": 16}

# id -> (projector class, config, in_dim, out_dim)
CASES: dict[str, tuple[type[Projector], ProjectorConfig, int, int]] = {
    "identity": (IdentityProjector, IdentityConfig(), IN_DIM, IN_DIM),
    "linear": (LinearProjector, LinearConfig(), IN_DIM, OUT_DIM),
    "mlp": (MLPProjector, MLPConfig(depth=2), IN_DIM, OUT_DIM),
    "qformer": (
        QFormerProjector,
        QFormerConfig(num_queries=3, cross_attention_every=2, dropout=0.1, **TINY_QFORMER),
        IN_DIM,
        OUT_DIM,
    ),
    "window-qformer-overlapping": (
        WindowQFormerProjector,
        WindowQFormerConfig(
            window=5, stride=3, queries_per_window=2, cross_attention_every=1, **TINY_QFORMER
        ),
        IN_DIM,
        OUT_DIM,
    ),
    "window-qformer-salmonn": (
        WindowQFormerProjector,
        WindowQFormerConfig(window=17, stride=17, queries_per_window=1, **TINY_QFORMER),
        IN_DIM,
        OUT_DIM,
    ),
    "perceiver": (
        PerceiverResampler,
        PerceiverConfig(num_latents=4, depth=2, heads=2, dim_head=4, ff_mult=2),
        IN_DIM,
        OUT_DIM,
    ),
    "avgpool-2": (AvgPoolLinearProjector, AvgPoolConfig(pool=2), IN_DIM, OUT_DIM),
    "avgpool-3": (AvgPoolLinearProjector, AvgPoolConfig(pool=3), IN_DIM, OUT_DIM),
    "star-mlp": (StarMLPProjector, StarMLPConfig(width_factor=2), IN_DIM, OUT_DIM),
}


@pytest.fixture(scope="module", params=list(CASES))
def projector(request) -> Projector:
    cls, config, in_dim, out_dim = CASES[request.param]
    torch.manual_seed(0)
    return cls(config, in_dim, out_dim)


def padded_batch(lengths: list[int], dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random tokens; the padding is large noise, so any leak shows up in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    tokens = torch.randn(len(lengths), width, dim, generator=gen)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    noise = 100 * torch.randn(tokens.shape, generator=gen)
    return torch.where(mask.unsqueeze(-1), tokens, noise), mask


def test_forward_backward_shapes_and_padding_gets_no_gradient(projector):
    projector.train()
    lengths = [7, 1, 19]
    tokens, mask = padded_batch(lengths, projector.in_dim, seed=1)
    tokens.requires_grad_(True)
    out, out_mask = projector(tokens, mask)
    counts = [projector.num_tokens(n) for n in lengths]
    assert out.shape == (len(lengths), max(counts), projector.out_dim)
    assert out_mask.shape == out.shape[:2] and out_mask.dtype == torch.bool
    out[out_mask].square().sum().backward()
    assert all(p.grad is not None for p in projector.parameters())
    assert torch.all(tokens.grad[~mask] == 0), "a masked input token received gradient"
    assert tokens.grad[mask].abs().sum() > 0
    projector.zero_grad()


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=4),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_each_item_gets_exactly_num_tokens_left_aligned_and_padding_never_leaks(projector, lengths, seed):
    projector.eval()
    tokens, mask = padded_batch(lengths, projector.in_dim, seed)
    with torch.no_grad():
        out, out_mask = projector(tokens, mask)
        for i, n in enumerate(lengths):
            expected = projector.num_tokens(n)
            assert out_mask[i].sum().item() == expected
            assert out_mask[i, :expected].all(), "real output tokens must come first in the row"
            alone, alone_mask = projector(tokens[i : i + 1, :n], mask[i : i + 1, :n])
            assert alone_mask.sum().item() == expected
            torch.testing.assert_close(out[i, :expected], alone[0, :expected], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (WindowQFormerConfig(window=17, stride=17), {1: 1, 16: 1, 17: 1, 18: 2, 34: 2, 35: 3, 1500: 89}),
        (
            WindowQFormerConfig(window=5, stride=3, queries_per_window=2),
            {1: 2, 5: 2, 6: 4, 8: 4, 9: 6, 16: 10},
        ),
        (AvgPoolConfig(pool=2), {1: 1, 2: 1, 3: 2, 4: 2, 1500: 750}),
        (AvgPoolConfig(pool=3), {1: 1, 3: 1, 4: 2, 16: 6}),
        (QFormerConfig(num_queries=32), {1: 32, 257: 32}),
        (PerceiverConfig(num_latents=64), {1: 64, 1000: 64}),
        (StarMLPConfig(), {1: 1, 40: 40}),
    ],
)
def test_num_tokens_by_hand(config, expected):
    assert {n: config.num_tokens(n) for n in expected} == expected


def test_window_qformer_num_windows_by_hand():
    config = WindowQFormerConfig(window=17, stride=17)
    assert [config.num_windows(n) for n in (17, 18, 34, 35)] == [1, 2, 2, 3]


def test_avgpool_exact_values_partial_last_window_and_padding():
    projector = AvgPoolLinearProjector(AvgPoolConfig(pool=2), 2, 2)
    with torch.no_grad():
        projector.proj.weight.copy_(torch.eye(2))
        projector.proj.bias.zero_()
    tokens = torch.tensor(
        [
            [[1.0, 10.0], [3.0, 30.0], [5.0, 50.0], [7.0, 70.0], [9.0, 90.0]],
            [[2.0, 4.0], [4.0, 8.0], [6.0, 12.0], [1e6, 1e6], [-1e6, 1e6]],
            [[1.0, 1.0], [1e6, 1e6], [3.0, 3.0], [5.0, 5.0], [1e6, 1e6]],
        ]
    )
    mask = torch.tensor([[True] * 5, [True, True, True, False, False], [True, False, True, True, False]])
    out, out_mask = projector(tokens, mask)
    assert out_mask.tolist() == [[True, True, True], [True, True, False], [True, True, False]]
    # row 2: real tokens are grouped in order (1, 3 | 5), wherever the encoder put them
    expected = torch.tensor(
        [
            [[2.0, 20.0], [6.0, 60.0], [9.0, 90.0]],
            [[3.0, 6.0], [6.0, 12.0], [0.0, 0.0]],
            [[2.0, 2.0], [5.0, 5.0], [0.0, 0.0]],
        ]
    )
    torch.testing.assert_close(out[out_mask], expected[out_mask])


def test_window_qformer_windows_attend_only_within_themselves():
    cls, config, in_dim, out_dim = CASES["window-qformer-overlapping"]
    torch.manual_seed(0)
    projector = cls(config, in_dim, out_dim).eval()
    tokens = torch.randn(1, 14, in_dim)
    mask = torch.ones(1, 14, dtype=torch.bool)
    changed = tokens.clone()
    changed[0, 9] = torch.randn(in_dim)  # token 9 lies in windows 2 (6..10) and 3 (9..13) only
    with torch.no_grad():
        before, _ = projector(tokens, mask)
        after, _ = projector(changed, mask)
    per_window = config.queries_per_window
    torch.testing.assert_close(before[0, : 2 * per_window], after[0, : 2 * per_window])
    assert not torch.allclose(before[0, 2 * per_window :], after[0, 2 * per_window :])


@pytest.mark.parametrize("cls", [QFormerProjector, WindowQFormerProjector])
def test_qformers_reject_an_item_without_tokens(cls):
    config = cls.config_class(**TINY_QFORMER)
    projector = cls(config, IN_DIM, OUT_DIM)
    mask = torch.tensor([[True, True], [False, False]])
    with pytest.raises(ValueError, match="no real tokens.*row 1"):
        projector(torch.randn(2, 2, IN_DIM), mask)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (QFormerConfig, {"num_queries": 0}, "num_queries"),
        (QFormerConfig, {"num_layers": 0}, "num_layers"),
        (QFormerConfig, {"hidden_size": 10, "num_heads": 3}, "hidden_size"),
        (QFormerConfig, {"num_layers": 2, "cross_attention_every": 3}, "cross_attention_every"),
        (QFormerConfig, {"cross_attention_every": 0}, "cross_attention_every"),
        (QFormerConfig, {"dropout": 1.0}, "dropout"),
        (WindowQFormerConfig, {"window": 0}, "window"),
        (WindowQFormerConfig, {"window": 4, "stride": 5}, "stride"),
        (WindowQFormerConfig, {"stride": 0}, "stride"),
        (WindowQFormerConfig, {"queries_per_window": 0}, "queries_per_window"),
        (WindowQFormerConfig, {"intermediate_size": 0}, "intermediate_size"),
        (PerceiverConfig, {"num_latents": 0}, "num_latents"),
        (PerceiverConfig, {"depth": 0}, "depth"),
        (PerceiverConfig, {"heads": 0}, "heads"),
        (PerceiverConfig, {"dim_head": 0}, "dim_head"),
        (PerceiverConfig, {"ff_mult": 0}, "ff_mult"),
        (AvgPoolConfig, {"pool": 0}, "pool"),
        (StarMLPConfig, {"width_factor": 0}, "width_factor"),
        (StarMLPConfig, {"activation": "tanh"}, "activation"),
        (StarMLPConfig, {"clamp": 0.0}, "clamp"),
    ],
)
def test_configs_reject_bad_values_naming_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        cls(**kwargs)


@pytest.mark.parametrize("case", list(CASES))
def test_configs_round_trip_through_json(case):
    config = CASES[case][1]
    data = json.loads(json.dumps(dataclasses.asdict(config)))
    assert type(config)(**data) == config


def test_star_mlp_maps_pooled_vectors_too():
    projector = StarMLPProjector(StarMLPConfig(width_factor=2), IN_DIM, OUT_DIM).eval()
    vectors = torch.randn(3, IN_DIM)
    tokens, _ = projector(vectors.unsqueeze(1), torch.ones(3, 1, dtype=torch.bool))
    torch.testing.assert_close(projector.project(vectors), tokens[:, 0])


# Through the zoo: tiny-test-vlm's ViT gives 16 tokens per 32x32 image, width 32; the Llama is 64 wide.
ZOO_PROJECTORS = {
    "qformer": (
        {"num_queries": 4, "num_layers": 2, "num_heads": 2, "hidden_size": 16, "intermediate_size": 32},
        4,
    ),
    "window-qformer": (
        {
            "window": 5,
            "stride": 3,
            "queries_per_window": 2,
            "num_layers": 2,
            "num_heads": 2,
            "hidden_size": 16,
            "intermediate_size": 32,
        },
        10,
    ),
    "perceiver": ({"num_latents": 6, "depth": 1, "heads": 2, "dim_head": 8, "ff_mult": 2}, 6),
    "avgpool-linear": ({"pool": 3}, 6),
    "star-mlp": ({"width_factor": 2}, 16),
}
PROMPTS = ["<image> What colour is the circle?", "Compare <image> with <image> please"]
ITEMS = {"image": [[image(0)], [image(1), image(2)]]}


def vlm_spec(projector_type: str, config: dict) -> dict:
    spec = json.loads(json.dumps(zoo.card("tiny-test-vlm").spec))
    spec["projectors"]["image"] = {"type": projector_type, "config": config}
    return spec


@pytest.mark.parametrize("projector_type", list(ZOO_PROJECTORS))
def test_each_projector_drives_a_multimodal_lm(projector_type):
    config, per_image = ZOO_PROJECTORS[projector_type]
    model = zoo.build(vlm_spec(projector_type, config))
    batch = model.processor(PROMPTS, ITEMS, targets=["red", "they differ"])
    placeholder = model.processor.placeholder_ids["image"]
    assert (batch["input_ids"] == placeholder).sum(1).tolist() == [per_image, 2 * per_image]
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.projectors["image"].parameters())
    model.eval()
    texts = model.generate_text(PROMPTS, ITEMS, max_new_tokens=3, do_sample=False)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_a_bad_projector_config_in_a_spec_names_the_field():
    with pytest.raises(SpecError, match="spec.projectors.image.config.*'stride'"):
        zoo.build(vlm_spec("window-qformer", {"window": 4, "stride": 5}))
