"""LoRAMoE as the instruct stage's adapter in ``zoo finetune``: settings, what trains, the balance loss in the
objective, save_pretrained / zoo.load round trip (strict), folding in ``zoo merge``, and bit-exact resume after
SIGKILL, on tiny-test-vlm."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from typer.testing import CliRunner

import zoo
from tasks.config import load_task
from tests.helpers import run_and_kill_after_first_checkpoint
from zoo.cli import app
from zoo.errors import WeightsError
from zoo.training import TrainingConfig, TrainingError, finetune, load_adapter
from zoo.training.data import LMCollator, build_examples
from zoo.training.loramoe import LoRAMoELinear, apply_loramoe, loramoe_balance_loss
from zoo.training.merge import MergeError, merge
from zoo.training.objectives import CausalLMObjective, token_loss_sum
from zoo.training.stages import apply_stage

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220)}
TARGETS = [f"language_model.model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
LORAMOE = ["--set", "adapter=loramoe", "--set", "loramoe_experts=3", "--set", "loramoe_top_k=2", "--set", "lora_r=4",
           "--set", "loramoe_balance_weight=0.1"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """12 one-shape pictures with a colour question each."""
    root = tmp_path_factory.mktemp("scenes")
    rows = []
    for i, (colour, shape) in enumerate([(c, s) for c in COLOURS for s in ("circle", "square")] * 2):
        image = Image.new("RGB", (32, 32), "white")
        draw = ImageDraw.Draw(image)
        (draw.ellipse if shape == "circle" else draw.rectangle)((8, 8, 24, 24), fill=COLOURS[colour])
        image.save(root / f"{i}.png")
        rows.append({"id": f"s{i}", "image": f"{i}.png", "question": f"What colour is the {shape}?", "answers": [colour]})
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def _cli_args(scenes: Path, output_dir: Path) -> list[str]:
    return ["finetune", "tiny-test-vlm", "--task", "vqa", "--data", str(scenes / "train.jsonl"), "--stage", "instruct",
            "-o", str(output_dir), "--max-steps", "4", "--batch-size", "4", "--lr", "0.01",
            "--set", "save_every=1", "--set", "progress=false", *LORAMOE]


def _settings() -> dict:
    """The training settings _cli_args gives, for the Python API."""
    return {"max_steps": 4, "batch_size": 4, "lr": 0.01, "save_every": 1, "progress": False, "adapter": "loramoe",
            "loramoe_experts": 3, "loramoe_top_k": 2, "lora_r": 4, "loramoe_balance_weight": 0.1}


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def reference(scenes, tmp_path_factory):
    """An uninterrupted LoRAMoE instruct run through the Python API (the same settings as _cli_args)."""
    out = tmp_path_factory.mktemp("reference")
    return finetune(zoo.load("tiny-test-vlm"), "vqa", scenes / "train.jsonl", "instruct", out, **_settings())


@pytest.fixture(scope="module")
def batch(scenes):
    model = zoo.build("tiny-test-vlm")
    return model.processor(["<image> What colour is the circle?", "<image> Colour?"],
                           {"image": [[str(scenes / "0.png")], [str(scenes / "3.png")]]}, padding_side="left")


def _steps(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "step" in r]


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"adapter": "moe"}, "adapter must be one of lora, loramoe"),
    ({"adapter": "loramoe", "stage": "align"}, "adapter='loramoe' is added by the instruct stage"),
    ({"adapter": "loramoe", "loramoe_experts": 0}, "loramoe_experts must be at least 1"),
    ({"adapter": "loramoe", "loramoe_experts": 4, "loramoe_top_k": 5}, r"loramoe_top_k must be unset .* \[1, "),
    ({"adapter": "loramoe", "loramoe_balance_weight": -0.1}, "loramoe_balance_weight must be >= 0"),
])
def test_bad_loramoe_settings_are_refused(settings, message):
    with pytest.raises(TrainingError, match=message):
        TrainingConfig.from_kwargs(settings)


def test_target_modules_that_name_nothing_are_an_error(scenes, tmp_path):
    with pytest.raises(TrainingError, match="LoRAMoE could not be added.*named: .*q_proj"):
        finetune(zoo.build("tiny-test-vlm"), "vqa", scenes / "train.jsonl", "instruct", tmp_path, adapter="loramoe",
                 lora_target_modules=["qkv"], max_steps=1, progress=False)


# --- training ----------------------------------------------------------------------------------------


def test_instruct_with_loramoe_trains_projectors_routers_and_experts_only(reference):
    base = zoo.build("tiny-test-vlm").state_dict()
    trained = reference.model.state_dict()
    layers = {n: m for n, m in reference.model.named_modules() if isinstance(m, LoRAMoELinear)}
    assert sorted(layers) == TARGETS
    assert all((m.num_experts, m.top_k, m.r) == (3, 2, 4) for m in layers.values())
    added = {f"{n}.{p}" for n in layers for p in ("router.weight", "lora_A", "lora_B")}
    assert trained.keys() == base.keys() | added
    assert {k for k in base if not torch.equal(trained[k], base[k])} == {k for k in base if k.startswith("projectors.")}
    assert all(trained[k].abs().sum() > 0 for k in added if k.endswith("lora_B"))  # B starts at zero: it trained
    params = dict(reference.model.named_parameters())
    projector_size = sum(v.numel() for k, v in params.items() if k.startswith("projectors."))
    assert reference.trainable_parameters == projector_size + sum(trained[k].numel() for k in added)


@pytest.mark.parametrize("weight", [0.5, 0.0])
def test_the_objective_adds_the_balance_loss_per_answer_token(scenes, weight):
    model = zoo.build("tiny-test-vlm")
    apply_stage(model, TrainingConfig(adapter="loramoe", loramoe_experts=3, loramoe_balance_weight=weight))
    examples = build_examples(model, load_task("vqa"), scenes / "train.jsonl").examples[:3]
    batch = LMCollator(model.processor, packed=False)(examples)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, LoRAMoELinear):
                layer.router.weight.normal_()  # a router that does not route uniformly: the balance loss is > 0
        objective = CausalLMObjective(model)
        total = objective(**batch)
        balance = loramoe_balance_loss(model, batch["attention_mask"])
        embeds = model.embed_inputs(batch["input_ids"], batch["modality_inputs"])
        logits = model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                      position_ids=batch["position_ids"]).logits
        cross_entropy = token_loss_sum(logits, batch["labels"])
    answer_tokens = int((batch["labels"][:, 1:] != -100).sum())
    assert balance > 0.01
    assert (model.training_penalty is None) == (weight == 0)
    torch.testing.assert_close(total, cross_entropy + answer_tokens * weight * balance)


def test_the_balance_loss_trains_the_same_under_gradient_checkpointing(scenes):
    """The routing weights the balance loss reads come from the checkpointed forward; backward recomputes them."""
    grads = []
    for checkpointing in (False, True):
        model = zoo.build("tiny-test-vlm")
        torch.manual_seed(0)
        apply_stage(model, TrainingConfig(adapter="loramoe", loramoe_experts=3, loramoe_balance_weight=1.0,
                                          gradient_checkpointing=checkpointing))
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, LoRAMoELinear):
                    layer.router.weight.normal_()
                    layer.lora_B.normal_()
        examples = build_examples(model, load_task("vqa"), scenes / "train.jsonl").examples[:3]
        CausalLMObjective(model)(**LMCollator(model.processor, packed=False)(examples)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any(k.endswith("router.weight") for k in grads[0])
    assert all(torch.equal(grads[0][k], grads[1][k]) for k in grads[0])


# --- save and reload ---------------------------------------------------------------------------------


def test_an_unmerged_final_is_an_adapter_for_its_base_model(scenes, batch, tmp_path):
    result = finetune(zoo.build("tiny-test-vlm"), "vqa", scenes / "train.jsonl", "instruct", tmp_path,
                      **{**_settings(), "max_steps": 1, "merge_lora": False})
    assert not (result.final_dir / "model.safetensors").exists()
    adapter = load_adapter(result.final_dir, zoo.build("tiny-test-vlm"))
    with torch.no_grad():
        assert torch.equal(adapter(**batch).logits, result.model.eval()(**batch).logits)


def test_final_model_records_its_loramoe_layers_and_reloads_to_identical_outputs(reference, batch):
    config = json.loads((reference.final_dir / "config.json").read_text())
    layers = config["adapters"]["loramoe"]["layers"]
    assert sorted(layers) == TARGETS
    assert layers[TARGETS[0]] == {"num_experts": 3, "r": 4, "alpha": 16.0, "dropout": 0.0, "top_k": 2}
    loaded = zoo.load(reference.final_dir)
    assert loaded.state_dict().keys() == reference.model.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, reference.model.eval()(**batch).logits)
    again = loaded.save_pretrained(reference.output_dir / "again")
    assert json.loads((again / "config.json").read_text())["adapters"] == config["adapters"]
    assert f"zoo.load({str(again)!r})" in (again / "README.md").read_text()


def _edited_copy(final: Path, target: Path, edit) -> Path:
    shutil.copytree(final, target)
    config = json.loads((target / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.pop("adapters"), "unexpected key.*router.weight"),
    (lambda c: c["adapters"]["loramoe"]["layers"].pop(TARGETS[1]), "3 unexpected key.*layers.0.self_attn.v_proj.lora_A"),
    (lambda c: c["adapters"]["loramoe"]["layers"].update(
        {"language_model.model.layers.0.mlp.up_proj": c["adapters"]["loramoe"]["layers"][TARGETS[0]]}),
     "missing key.*mlp.up_proj.lora_A"),
    (lambda c: c["adapters"]["loramoe"]["layers"][TARGETS[0]].update(num_experts=2), "lora_A has shape"),
    (lambda c: c["adapters"]["loramoe"]["layers"][TARGETS[0]].update(r="4"), "r has the wrong type"),
    (lambda c: c["adapters"]["loramoe"]["layers"][TARGETS[0]].update(extra=1), "needs exactly the settings"),
    (lambda c: c["adapters"]["loramoe"]["layers"].update({"encoders.nothing": {}}), "needs exactly the settings"),
    (lambda c: c["adapters"].update(peft={}), "adapters must map adapter kinds"),
])
def test_loading_refuses_an_adapter_record_that_does_not_fit_the_weights(reference, tmp_path, edit, message):
    directory = _edited_copy(reference.final_dir, tmp_path / "edited", edit)
    with pytest.raises(WeightsError, match=message):
        zoo.load(directory)


# --- folding in zoo merge ----------------------------------------------------------------------------


def _loramoe_copy(base, **settings):
    model = copy.deepcopy(base)
    apply_loramoe(model, dropout=0.0, r=2, **settings)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, LoRAMoELinear):
                layer.lora_B.copy_(0.5 * torch.randn(layer.lora_B.shape, generator=generator))
                layer.router.weight.copy_(torch.randn(layer.router.weight.shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize("settings", [{"num_experts": 1}, {"num_experts": 3, "uniform": True},
                                      {"num_experts": 3, "top_k": 3, "uniform": True}])
def test_merge_folds_a_fixed_routing_exactly(batch, settings):
    base = zoo.build("tiny-test-vlm").eval()
    uniform = settings.pop("uniform", False)
    model = _loramoe_copy(base, **settings)
    if uniform:
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, LoRAMoELinear):
                    layer.router.weight.copy_(layer.router.weight[:1].expand_as(layer.router.weight))
    folded = merge(base, model, 1.0).eval()
    assert folded.state_dict().keys() == base.state_dict().keys()
    assert any(isinstance(m, LoRAMoELinear) for m in model.modules())  # the input is not changed
    with torch.no_grad():
        expected, got = model(**batch).logits, folded(**batch).logits
        assert not torch.allclose(expected, base(**batch).logits, atol=1e-3)  # the experts do change the outputs
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("settings", [{"num_experts": 3}, {"num_experts": 3, "top_k": 1}])
def test_merge_refuses_routing_that_depends_on_the_input(settings):
    base = zoo.build("tiny-test-vlm")
    with pytest.raises(MergeError, match="cannot merge finetuned: 4 LoRAMoE layer.*router that depends on each token"):
        merge(base, _loramoe_copy(base, **settings), 0.5)


def test_zoo_merge_folds_a_saved_one_expert_model_and_refuses_a_routed_one(reference, batch, tmp_path):
    base = zoo.build("tiny-test-vlm")
    one_expert = _loramoe_copy(base, num_experts=1).save_pretrained(tmp_path / "one")
    _invoke(["merge", "tiny-test-vlm", str(one_expert), "--alpha", "1", "-o", str(tmp_path / "plain")])
    plain = zoo.load(tmp_path / "plain")
    assert "adapters" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, zoo.load(one_expert)(**batch).logits, rtol=1e-4, atol=1e-5)
    refused = CliRunner().invoke(app, ["merge", "tiny-test-vlm", str(reference.final_dir), "--alpha", "0.5",
                                       "-o", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "router that depends on each token" in refused.output
    assert not (tmp_path / "x").exists()


# --- resume ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_weights(scenes, reference, tmp_path):
    out = tmp_path / "killed"
    run_and_kill_after_first_checkpoint(_cli_args(scenes, out), out)
    _invoke(_cli_args(scenes, out))  # the same command again resumes
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] >= 1
    resumed = load_file(out / "final" / "model.safetensors")
    uninterrupted = load_file(reference.final_dir / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert [r["loss"] for r in _steps(out)] == [r["loss"] for r in _steps(reference.output_dir)]


@pytest.mark.slow
def test_resume_with_expert_dropout_gives_the_same_weights(scenes, tmp_path):
    args = [*_cli_args(scenes, tmp_path / "run"), "--set", "lora_dropout=0.1", "--max-steps", "3"]
    _invoke(args)
    uninterrupted = load_file(tmp_path / "run" / "final" / "model.safetensors")
    shutil.rmtree(tmp_path / "run" / "final")  # as if killed after step 2's checkpoint
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000003")
    _invoke(args)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["resumed_from_step"] == 2
    resumed = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_a_model_trained_with_loramoe_continues_training_its_own_experts(scenes, tmp_path):
    settings = {**_settings(), "max_steps": 2}
    first = finetune(zoo.load("tiny-test-vlm"), "vqa", scenes / "train.jsonl", "instruct", tmp_path / "a", **settings).model
    before = {k: v.clone() for k, v in first.state_dict().items()}
    second = finetune(first, "vqa", scenes / "train.jsonl", "instruct", tmp_path / "b", **settings).model
    after = second.state_dict()
    assert set(after) == set(before)  # no second set of experts around the first
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert any(".lora_A" in k for k in moved) and any(".router." in k for k in moved)
    assert not any(k.endswith("_proj.weight") and ".language_model." in f".{k}" for k in moved)  # the base stays frozen
    with pytest.raises(TrainingError, match="already holds LoRAMoE layers.*loramoe_experts"):
        finetune(second, "vqa", scenes / "train.jsonl", "instruct", tmp_path / "c", **{**settings, "loramoe_experts": 2})
