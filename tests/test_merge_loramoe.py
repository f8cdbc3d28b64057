"""Weight-space merging (uniform and per-layer ratios, CLI) and LoRAMoE fine-tuning on tiny-test-vlm."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import zoo
from tests.helpers import image
from zoo.cli import app
from zoo.spec import spec_from_dict, spec_to_dict
from zoo.training.loramoe import LoRAMoELinear, apply_loramoe, loramoe_balance_loss
from zoo.training.merge import MergeError, layer_schedule, merge

PROMPTS = ["<image> What colour is the circle?", "Describe <image> briefly"]
ITEMS = {"image": [[image(0)], [image(1)]]}
TARGETS = ["red", "a square"]
Q0 = "language_model.model.layers.0.self_attn.q_proj.weight"
UP1 = "language_model.model.layers.1.mlp.up_proj.weight"
PROJ = "projectors.image.layers.0.weight"
ENC = "encoders.image.model.patch_embed.proj.weight"


@pytest.fixture(scope="module")
def base():
    return zoo.build("tiny-test-vlm").eval()


@pytest.fixture(scope="module")
def finetuned(base):
    """A stand-in for a fine-tuned copy: every weight perturbed."""
    model = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def batch(base):
    return base.processor(PROMPTS, ITEMS, targets=TARGETS)


def _states(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_identical(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    other = model.state_dict()
    assert state.keys() == other.keys()
    assert all(torch.equal(state[k], other[k]) for k in state)


def _blend(base, finetuned, key, ratio):
    return (1 - ratio) * base.state_dict()[key] + ratio * finetuned.state_dict()[key]


# --- merge -------------------------------------------------------------------------------------------


def test_alpha_0_and_1_give_the_inputs_back_bit_for_bit_and_leave_them_unchanged(base, finetuned):
    base_before, finetuned_before = _states(base), _states(finetuned)
    _assert_identical(base_before, merge(base, finetuned, 0.0))
    _assert_identical(finetuned_before, merge(base, finetuned, 1.0))
    _assert_identical(base_before, base)
    _assert_identical(finetuned_before, finetuned)


def test_alpha_half_is_the_mean(base, finetuned):
    merged = merge(base, finetuned, 0.5).state_dict()
    for key in (Q0, PROJ, ENC):
        torch.testing.assert_close(merged[key], _blend(base, finetuned, key, 0.5))


def test_layer_alphas_first_matching_glob_wins_and_the_rest_get_alpha(base, finetuned):
    layer_alphas = {
        "language_model.model.layers.0.*": 0.2,
        "projectors.*": 1.0,
        "language_model.model.layers.*": 0.0,
    }
    merged = merge(base, finetuned, 0.5, layer_alphas=layer_alphas).state_dict()
    torch.testing.assert_close(merged[Q0], _blend(base, finetuned, Q0, 0.2))
    assert torch.equal(merged[PROJ], finetuned.state_dict()[PROJ])
    assert torch.equal(merged[UP1], base.state_dict()[UP1])
    torch.testing.assert_close(merged[ENC], _blend(base, finetuned, ENC, 0.5))


def test_layer_schedule_is_linear_in_depth(base, finetuned):
    schedule = layer_schedule(3, 0.2, 0.8)
    assert schedule == pytest.approx(
        {"language_model.model.layers.0.*": 0.2, "language_model.model.layers.1.*": 0.5,
         "language_model.model.layers.2.*": 0.8}
    )
    merged = merge(base, finetuned, 0.5, layer_alphas=layer_schedule(2, 0.0, 1.0)).state_dict()
    assert torch.equal(merged[Q0], base.state_dict()[Q0])
    assert torch.equal(merged[UP1], finetuned.state_dict()[UP1])


def test_bad_ratios_and_patterns_are_errors(base, finetuned):
    with pytest.raises(MergeError, match=r"alpha must be in \[0, 1\]"):
        merge(base, finetuned, 1.5)
    with pytest.raises(MergeError, match="'language_model.layers.0.\\*' match no parameter name"):
        merge(base, finetuned, 0.5, layer_alphas={"language_model.layers.0.*": 0.3})


def test_mismatched_architectures_name_the_keys():
    a = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    b = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    with pytest.raises(MergeError, match=r"0.weight has shape \(4, 4\) in base, \(3, 4\) in finetuned") as err:
        merge(a, b, 0.5)
    assert "2.weight only in finetuned" in str(err.value)


def test_integer_buffers_come_from_finetuned_except_at_ratio_0():
    a, b = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    b.train()(torch.randn(8, 3))
    assert merge(a, b, 0.5).num_batches_tracked.item() == 1
    torch.testing.assert_close(merge(a, b, 0.5).running_mean, b.running_mean / 2)
    assert merge(a, b, 0.0).num_batches_tracked.item() == 0


def test_different_specs_are_an_error(base):
    other = copy.deepcopy(base)
    spec = spec_to_dict(base.spec)
    spec["projectors"]["image"]["config"]["activation"] = "relu"
    other.spec = spec_from_dict(spec)
    with pytest.raises(MergeError, match="different specs \\(projectors differ\\)"):
        merge(base, other, 0.5)


def test_merged_model_runs_and_round_trips_through_save_and_load(base, finetuned, batch, tmp_path):
    merged = merge(base, finetuned, 0.3, layer_alphas={"projectors.*": 1.0})
    with torch.no_grad():
        logits = merged(**batch).logits
    assert torch.isfinite(logits).all()
    directory = merged.save_pretrained(tmp_path / "merged")
    assert "`projectors.*`: 1" in (directory / "README.md").read_text()
    reloaded = zoo.load(directory)
    _assert_identical(_states(merged), reloaded)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, logits)


def test_cli_merge_writes_a_loadable_model_and_says_what_it_did(base, finetuned, tmp_path):
    base_dir = base.save_pretrained(tmp_path / "base")
    finetuned_dir = finetuned.save_pretrained(tmp_path / "finetuned")
    out = tmp_path / "merged"
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["merge", str(base_dir), str(finetuned_dir), "--alpha", "0.5", "--layer-alpha", "projectors.*=1",
         "--output", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "51 tensors at 0.5, 4 at 1" in result.output and f"wrote {out}" in result.output
    assert json.loads((out / "config.json").read_text())["name"] == "merged"
    merged = zoo.load(out).state_dict()
    assert torch.equal(merged[PROJ], finetuned.state_dict()[PROJ])
    torch.testing.assert_close(merged[Q0], _blend(base, finetuned, Q0, 0.5))

    bad = runner.invoke(app, ["merge", str(base_dir), str(finetuned_dir), "--alpha", "0.5",
                              "--layer-alpha", "nothing.*=0.1", "--output", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "match no parameter name" in bad.output
    assert not (tmp_path / "x").exists()


# --- LoRAMoE -----------------------------------------------------------------------------------------


@pytest.fixture()
def wrapped(base):
    model = copy.deepcopy(base)
    names = apply_loramoe(model, num_experts=4, r=4, alpha=8.0, dropout=0.0)
    assert names == [
        f"language_model.model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")
    ]
    return model


def test_wrapped_model_starts_identical_to_the_base(base, wrapped, batch):
    with torch.no_grad():
        assert torch.equal(wrapped(**batch).logits, base(**batch).logits)


def test_only_router_and_experts_are_trainable(wrapped):
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert len(trainable) == 4 * 3
    assert all(n.rsplit(".", 2)[-1] in ("lora_A", "lora_B") or n.endswith("router.weight") for n in trainable)
    assert Q0 in wrapped.state_dict() and Q0 not in trainable  # the frozen weight keeps its name


def test_a_few_steps_reduce_the_loss_and_reach_every_expert_and_router(wrapped, batch):
    wrapped.train()
    params = [p for p in wrapped.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        out = wrapped(**batch)
        loss = out.loss + 0.01 * loramoe_balance_loss(wrapped, attention_mask=batch["attention_mask"])
        loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0]
    for name, param in wrapped.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_balance_loss_is_finite_differentiable_and_matches_its_definition(wrapped, batch):
    layers = [m for m in wrapped.modules() if isinstance(m, LoRAMoELinear)]
    with pytest.raises(ValueError, match="after model"):
        loramoe_balance_loss(wrapped)
    wrapped(**batch)
    loss = loramoe_balance_loss(wrapped, batch["attention_mask"], sample_types=torch.tensor([1, 0]), imbalance=0.1)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert all(layer.router.weight.grad.abs().sum() > 0 for layer in layers)

    with torch.no_grad():
        for layer in layers:
            layer.router.weight.zero_()  # uniform routing
        wrapped(**batch)
    mask = batch["attention_mask"]
    assert loramoe_balance_loss(wrapped, mask).item() == pytest.approx(0.0, abs=1e-10)
    types = torch.tensor([1, 0])
    assert loramoe_balance_loss(wrapped, mask, types, imbalance=0.1).item() == pytest.approx(0.01, rel=1e-4)


def test_layer_output_is_base_plus_routed_experts_and_top_k_routes_sparsely():
    torch.manual_seed(0)
    linear = nn.Linear(8, 6)
    layer = LoRAMoELinear(linear, num_experts=4, r=2, alpha=4.0, top_k=2)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 5, 8)
    weights = layer.routing_weights(x)
    assert ((weights > 0).sum(-1) == 2).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    experts = sum(
        weights[..., e : e + 1] * (x @ layer.lora_A[e].T @ layer.lora_B[e].T) for e in range(4)
    )
    torch.testing.assert_close(layer(x), linear(x) + 2.0 * experts)


def test_top_k_model_trains_and_bad_targets_are_errors(base, batch):
    model = copy.deepcopy(base)
    apply_loramoe(model, ("o_proj",), num_experts=3, r=2, top_k=1)
    out = model(**batch)
    (out.loss + loramoe_balance_loss(model, batch["attention_mask"])).backward()
    layer = model.language_model.model.layers[0].self_attn.o_proj
    assert layer.lora_B.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no nn.Linear named qkv.*named: .*q_proj"):
        apply_loramoe(copy.deepcopy(base), ("qkv",))
    with pytest.raises(ValueError, match="no submodule 'decoder'"):
        apply_loramoe(copy.deepcopy(base), within="decoder")
