"""Vision towers: open_clip towers (QuickGELU from tags, local checkpoints) and Hugging Face CLIP/SigLIP towers
(feature layer, CLS strategy, stored preprocessing), alone and inside zoo models. Nothing is downloaded: tiny
random models with the real architectures are saved to tmp dirs and loaded the way users load them."""

from __future__ import annotations

import copy
import json
import math

import open_clip
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data as skdata

import zoo
from encoders.image.hf_vision import HFVisionEncoder, HFVisionEncoderConfig, HFVisionProcessor
from encoders.image.open_clip_towers import (
    OpenCLIPImageProcessor,
    OpenCLIPTextConfig,
    OpenCLIPTextEncoder,
    OpenCLIPTextProcessor,
    OpenCLIPVisionConfig,
    OpenCLIPVisionEncoder,
    eot_mask,
    resolve_quick_gelu,
)
from tests.helpers import image

TINY_VISION_CFG = {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16}
TINY_TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 24, "heads": 2, "layers": 2}
# embed_dim != widths, so token features (width) and pooled embeddings (embed_dim) cannot be confused.
TINY_CLIP = {"embed_dim": 16, "vision_cfg": TINY_VISION_CFG, "text_cfg": TINY_TEXT_CFG}
# Equal widths: token width == embed_dim, for tests of projection "linear" on open_clip towers.
EQUAL_WIDTH_CLIP = {"embed_dim": 32, "vision_cfg": TINY_VISION_CFG, "text_cfg": {**TINY_TEXT_CFG, "width": 32}}
CHECKPOINT_LOGIT_SCALE = math.log(50.0)

TINY_VIT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
            "image_size": 32, "patch_size": 8}
PICTURES = {name: getattr(skdata, name)() for name in ("astronaut", "coffee", "chelsea", "camera")}


def _save_open_clip_checkpoint(name: str, path) -> str:
    """A random standard open_clip CLIP (OpenAI/LAION state-dict layout) saved as safetensors."""
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model(name)
    state = model.state_dict()
    state["logit_scale"] = torch.tensor(CHECKPOINT_LOGIT_SCALE)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def clip_checkpoints(tmp_path_factory):
    """Register two tiny open_clip model configs and save a random checkpoint of each."""
    root = tmp_path_factory.mktemp("open_clip")
    (root / "configs").mkdir()
    (root / "configs" / "tiny-test-clip.json").write_text(json.dumps(TINY_CLIP))
    (root / "configs" / "tiny-test-clip-equal-widths.json").write_text(json.dumps(EQUAL_WIDTH_CLIP))
    open_clip.add_model_config(root / "configs")
    return {
        name: _save_open_clip_checkpoint(name, root / f"{name}.safetensors")
        for name in ("tiny-test-clip", "tiny-test-clip-equal-widths")
    }


@pytest.fixture(scope="module")
def clip_towers(clip_checkpoints):
    common = {"model_name": "tiny-test-clip", "pretrained": clip_checkpoints["tiny-test-clip"], "quick_gelu": True}
    vision = OpenCLIPVisionEncoder(OpenCLIPVisionConfig(**common)).eval()
    text = OpenCLIPTextEncoder(OpenCLIPTextConfig(**common)).eval()
    return vision, text


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """A vision-only CLIP checkpoint and a full (dual) SigLIP checkpoint, each with its image processor."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    root = tmp_path_factory.mktemp("hf")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        CLIPVisionModel(CLIPVisionConfig(**TINY_VIT)).save_pretrained(root / "clip")
        text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "vocab_size": 100}
        SiglipModel(SiglipConfig(vision_config=TINY_VIT, text_config=text)).save_pretrained(root / "siglip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "siglip")
    return {"clip": str(root / "clip"), "siglip": str(root / "siglip")}


@pytest.fixture(scope="module")
def hf_towers(hf_dirs):
    return {
        (kind, strategy): HFVisionEncoder(
            HFVisionEncoderConfig(pretrained=hf_dirs[kind], feature_select_strategy=strategy)
        ).eval()
        for kind in ("clip", "siglip")
        for strategy in ("default", "full")
    }


# --- open_clip: QuickGELU -------------------------------------------------------------------------------


def test_quick_gelu_is_resolved_from_the_tag_registry():
    assert resolve_quick_gelu("ViT-B-32", "openai", None) is True
    assert resolve_quick_gelu("ViT-B-32", "laion2b_s34b_b79k", None) is False
    assert resolve_quick_gelu("ViT-B-32-quickgelu", None, None) is True  # no tag: the architecture decides
    assert resolve_quick_gelu("ViT-B-32", "/some/checkpoint.safetensors", True) is True


def _shrunk(model_name: str, pretrained: str, **extra) -> dict:
    """A real name + tag, shrunk through model_kwargs so building it is instant."""
    kwargs = {"embed_dim": 16, "vision_cfg": TINY_VISION_CFG, "text_cfg": TINY_TEXT_CFG}
    return {"model_name": model_name, "pretrained": pretrained, "model_kwargs": kwargs, **extra}


def test_tag_builds_with_its_activation_and_preprocessing_without_downloading(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", no_download)
    openai = OpenCLIPVisionEncoder(OpenCLIPVisionConfig(**_shrunk("ViT-B-32", "openai")), load_pretrained=False)
    assert openai.config.resolved_quick_gelu is True
    assert isinstance(openai.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    laion = OpenCLIPTextEncoder(OpenCLIPTextConfig(**_shrunk("ViT-B-32", "laion2b_s34b_b79k")), load_pretrained=False)
    assert laion.config.resolved_quick_gelu is False
    assert isinstance(laion.text.transformer.resblocks[0].mlp.gelu, torch.nn.GELU)
    tag = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    pre = openai.config.resolved_preprocess
    assert pre["mean"] == list(tag["mean"]) and pre["interpolation"] == "bicubic" and pre["size"] == [32, 32]


@pytest.mark.parametrize(("tag", "quick_gelu"), [("openai", False), ("laion2b_s34b_b79k", True)])
def test_quick_gelu_contradicting_the_tag_is_refused(tag, quick_gelu):
    with pytest.raises(ValueError, match=f"trained with quick_gelu={not quick_gelu}.*Leave quick_gelu unset"):
        OpenCLIPVisionEncoder(OpenCLIPVisionConfig(**_shrunk("ViT-B-32", tag, quick_gelu=quick_gelu)), False)


def test_bad_names_and_checkpoints_say_what_to_do(clip_checkpoints, tmp_path):
    with pytest.raises(ValueError, match="no model config named 'ViT-B-33'.*Did you mean"):
        OpenCLIPVisionEncoder(OpenCLIPVisionConfig(model_name="ViT-B-33"))
    with pytest.raises(ValueError, match="neither a pretrained tag of tiny-test-clip"):
        OpenCLIPVisionEncoder(OpenCLIPVisionConfig(model_name="tiny-test-clip", pretrained=str(tmp_path / "x.pt")))
    with pytest.raises(ValueError, match="not in model_kwargs"):
        OpenCLIPVisionConfig(model_name="ViT-B-32", model_kwargs={"quick_gelu": True})
    with pytest.raises(ValueError, match="hf-hub:/local-dir: names are not supported"):
        OpenCLIPTextConfig(model_name="hf-hub:timm/ViT-B-16-SigLIP")


# --- open_clip: towers from a local checkpoint ----------------------------------------------------------


def test_towers_give_open_clip_embeddings_and_token_features(clip_towers, clip_checkpoints):
    vision, text = clip_towers
    reference = open_clip.create_model(
        "tiny-test-clip", pretrained=clip_checkpoints["tiny-test-clip"], force_quick_gelu=True
    ).eval()
    images = OpenCLIPImageProcessor(vision.config)([image(0), image(1)])
    texts = OpenCLIPTextProcessor(text.config)(["a photo of a cat!!", "hi"])
    with torch.no_grad():
        v, t = vision(**images.inputs), text(**texts.inputs)
        torch.testing.assert_close(v.pooled, reference.encode_image(images.inputs["pixel_values"]))
        torch.testing.assert_close(t.pooled, reference.encode_text(texts.inputs["input_ids"]))
    assert (vision.hidden_size, vision.pooled_size, text.hidden_size, text.pooled_size) == (32, 16, 24, 16)
    assert v.tokens.shape == (2, 16, 32) and v.mask.all() and v.pooled.shape == (2, 16)
    assert t.tokens.shape == (2, 77, 24) and t.pooled.shape == (2, 16)
    assert vision.logit_scale_init == pytest.approx(CHECKPOINT_LOGIT_SCALE)


def test_loading_without_quick_gelu_changes_the_embeddings(clip_towers, clip_checkpoints):
    """The pitfall the resolution guards against: same weights, other activation, other embeddings."""
    vision, _ = clip_towers
    gelu = OpenCLIPVisionEncoder(
        OpenCLIPVisionConfig(model_name="tiny-test-clip", pretrained=clip_checkpoints["tiny-test-clip"])
    ).eval()
    assert gelu.config.resolved_quick_gelu is False
    pixels = OpenCLIPImageProcessor(vision.config)([image(0)]).inputs
    with torch.no_grad():
        assert not torch.allclose(vision(**pixels).pooled, gelu(**pixels).pooled, atol=1e-4)


def test_text_mask_runs_to_the_end_token_even_through_id_zero(clip_towers):
    """Pad id 0 is also a real token ("!"), so the mask comes from the end-of-text position, not ids != 0."""
    _, text = clip_towers
    processor = OpenCLIPTextProcessor(text.config)
    captions = ["a cat!", "a much longer caption of a cat"]
    batch = processor(captions)
    assert batch.sizes == [len(processor.tokenize.encode(c)) + 2 for c in captions]  # + start and end tokens
    with torch.no_grad():
        assert text(**batch.inputs).mask.sum(1).tolist() == [text.num_tokens(n) for n in batch.sizes]
    sot, eot = processor.tokenize.sot_token_id, processor.tokenize.eot_token_id
    ids = torch.zeros(1, 77, dtype=torch.long)
    ids[0, :4] = torch.tensor([sot, 0, 320, eot])
    assert eot_mask(ids)[0, :6].tolist() == [True, True, True, True, False, False]
    truncated = processor(["word " * 200]).sizes
    assert truncated == [77] and text.num_tokens(truncated[0]) == 77


# --- Hugging Face towers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "strategy", "count"),
    [("clip", "default", 16), ("clip", "full", 17), ("siglip", "default", 16), ("siglip", "full", 16)],
)
def test_token_counts_follow_cls_and_strategy(hf_towers, kind, strategy, count):
    tower = hf_towers[(kind, strategy)]
    assert tower.config.resolved_prefix_tokens == (1 if kind == "clip" else 0)
    assert tower.num_tokens((32, 32)) == count
    batch = tower.processor_class(tower.config)([image(0), image(1)])
    with torch.no_grad():
        out = tower(**batch.inputs)
    assert out.tokens.shape == (2, count, 32) and out.mask.sum(1).tolist() == [count, count]


def test_tokens_come_from_the_feature_layer_and_pooled_from_the_pooler(hf_towers, hf_dirs):
    tower = hf_towers[("clip", "full")]
    last = HFVisionEncoder(HFVisionEncoderConfig(pretrained=hf_dirs["clip"], vision_feature_layer=-1)).eval()
    pixels = HFVisionProcessor(tower.config)([image(0)]).inputs["pixel_values"]
    with torch.no_grad():
        reference = tower.model(pixel_values=pixels, output_hidden_states=True)
        out, out_last = tower(pixel_values=pixels), last(pixel_values=pixels)
    assert torch.equal(out.tokens, reference.hidden_states[-2])
    assert torch.equal(out_last.tokens, reference.hidden_states[-1][:, 1:])
    assert torch.equal(out.pooled, reference.pooler_output) and torch.equal(out_last.pooled, out.pooled)


def test_full_dual_checkpoint_loads_its_vision_weights(hf_towers, hf_dirs):
    from transformers import SiglipModel

    full = SiglipModel.from_pretrained(hf_dirs["siglip"])
    tower = hf_towers[("siglip", "default")]
    torch.testing.assert_close(
        tower.model.embeddings.patch_embedding.weight, full.vision_model.embeddings.patch_embedding.weight
    )


def test_hf_config_errors_say_what_to_do(hf_dirs):
    with pytest.raises(ValueError, match="out of range for a 3-layer tower"):
        HFVisionEncoder(HFVisionEncoderConfig(pretrained=hf_dirs["clip"], vision_feature_layer=5))
    with pytest.raises(ValueError, match="allowed: default, full"):
        HFVisionEncoderConfig(pretrained=hf_dirs["clip"], feature_select_strategy="cls")
    with pytest.raises(ValueError, match="needs 'image_processor'"):
        HFVisionEncoderConfig(model_config={"model_type": "clip_vision_model", **TINY_VIT})
    small = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 24},
             "crop_size": {"height": 24, "width": 24}}
    with pytest.raises(ValueError, match=r"makes \(24, 24\) images but the model takes \(32, 32\)"):
        HFVisionEncoder(HFVisionEncoderConfig(pretrained=hf_dirs["clip"], image_processor=small))


def test_random_init_from_model_config_and_siglip_without_head_pools_by_mean():
    processor = {"image_processor_type": "SiglipImageProcessor", "size": {"height": 32, "width": 32}}
    tower = HFVisionEncoder(HFVisionEncoderConfig(
        model_config={"model_type": "siglip_vision_model", "vision_use_head": False, **TINY_VIT},
        image_processor=processor,
    )).eval()
    assert tower.config.resolved_image_processor["image_mean"] == [0.5, 0.5, 0.5]
    assert tower.num_tokens((32, 32)) == 16
    pixels = HFVisionProcessor(tower.config)([image(0)]).inputs["pixel_values"]
    with torch.no_grad():
        out, reference = tower(pixel_values=pixels), tower.model(pixel_values=pixels)
    assert reference.pooler_output is None
    torch.testing.assert_close(out.pooled, reference.last_hidden_state.mean(1))


# --- every processor: token counts, real pictures, determinism ------------------------------------------


@pytest.fixture(scope="module")
def image_towers(clip_towers, hf_towers):
    return {"open_clip": clip_towers[0], "hf-clip": hf_towers[("clip", "full")],
            "hf-siglip": hf_towers[("siglip", "default")]}


@settings(max_examples=12, deadline=None)
@given(height=st.integers(1, 96), width=st.integers(1, 96), seed=st.integers(0, 2**16))
def test_processor_and_model_token_counts_agree_for_any_raw_size(image_towers, height, width, seed):
    for name, tower in image_towers.items():
        batch = tower.processor_class(tower.config)([image(seed, (height, width)), image(seed + 1, (width, height))])
        assert batch.sizes == [(32, 32), (32, 32)], name
        with torch.no_grad():
            out = tower(**batch.inputs)
        assert out.mask.sum(1).tolist() == [tower.num_tokens(s) for s in batch.sizes], name


@pytest.mark.parametrize("name", ["open_clip", "hf-clip", "hf-siglip"])
def test_real_pictures_go_through_deterministically(image_towers, name):
    tower = image_towers[name]
    processor = tower.processor_class(tower.config)
    first = processor(list(PICTURES.values())).inputs["pixel_values"]
    again = tower.processor_class(tower.config)(list(PICTURES.values())).inputs["pixel_values"]
    assert first.shape == (4, 3, 32, 32) and torch.isfinite(first).all()
    assert torch.equal(first, again)
    pre = tower.config.resolved_preprocess if name == "open_clip" else tower.config.resolved_image_processor
    mean, std = (torch.tensor(pre[k]).view(3, 1, 1) for k in (("mean", "std") if name == "open_clip"
                                                             else ("image_mean", "image_std")))
    camera = first[3] * std + mean  # grayscale: the three channels are one picture before normalisation
    torch.testing.assert_close(camera[0], camera[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(camera[0], camera[2], atol=1e-5, rtol=0)


# --- through the zoo --------------------------------------------------------------------------------------


def test_multimodal_lm_with_an_hf_vision_tower(hf_dirs, tmp_path):
    spec = copy.deepcopy(zoo.card("tiny-test-vlm").spec)
    spec["encoders"]["image"] = {"type": "hf-vision", "config": {"pretrained": hf_dirs["clip"]}}
    model = zoo.build(spec).eval()
    prompts, items = ["<image> What is it?", "Compare <image> and <image>"], {"image": [[PICTURES["chelsea"]],
                                                                                       [image(0), image(1)]]}
    batch = model.processor(prompts, items, targets=["a cat", "same"])
    assert (batch["input_ids"] == model.processor.placeholder_ids["image"]).sum(1).tolist() == [16, 32]
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)
        generated = model.generate(**model.processor(prompts, items), max_new_tokens=3, do_sample=False)
    assert generated.shape[0] == 2
    loaded = zoo.load(model.save_pretrained(tmp_path / "vlm"))
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


def test_dual_encoder_with_open_clip_towers_matches_open_clip(clip_checkpoints, tmp_path):
    """projection 'none': the DualEncoder's embeddings are open_clip's own, and so is the logit scale."""
    checkpoint = clip_checkpoints["tiny-test-clip"]
    tower = {"model_name": "tiny-test-clip", "pretrained": checkpoint}
    spec = {
        "type": "dual-encoder",
        "towers": {"image": {"type": "open-clip-vision", "config": tower}},
        "text_tower": {"type": "open-clip-text", "config": tower},
        "embed_dim": 16,
        "projection": "none",
    }
    model = zoo.load(spec)
    assert model.logit_scale.item() == pytest.approx(CHECKPOINT_LOGIT_SCALE)
    pictures = [PICTURES["astronaut"], PICTURES["coffee"]]
    texts = ["an astronaut", "a cup of coffee!"]
    reference, _, preprocess = open_clip.create_model_and_transforms("tiny-test-clip", pretrained=checkpoint)
    reference.eval()
    tokenizer = open_clip.get_tokenizer("tiny-test-clip")
    from PIL import Image

    with torch.no_grad():
        img, txt = model.embed("image", pictures), model.embed_text(texts)
        ref_img = reference.encode_image(torch.stack([preprocess(Image.fromarray(p).convert("RGB")) for p in pictures]))
        ref_txt = reference.encode_text(tokenizer(texts))
    torch.testing.assert_close(img, torch.nn.functional.normalize(ref_img, dim=-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(txt, torch.nn.functional.normalize(ref_txt, dim=-1), rtol=1e-5, atol=1e-5)
    loaded = zoo.load(model.save_pretrained(tmp_path / "clip"))
    with torch.no_grad():
        assert torch.equal(loaded.embed("image", pictures), img)
        assert torch.equal(loaded.embed_text(texts), txt)
    with pytest.raises(ValueError, match="projection 'none' needs"):
        zoo.build({**spec, "embed_dim": 32})
