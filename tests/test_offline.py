"""Loading without the network: a card whose files come from the Hugging Face Hub and are not cached fails at
once (no retries) with a HubOfflineError naming the repo, the files and the `hf download` command, whether
HF_HUB_OFFLINE is set or the Hub simply does not answer; nothing here reaches a network."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import httpx2
import huggingface_hub
import open_clip  # noqa: F401  (imported up front: the time limit is for the network, not for imports)
import pytest
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

import zoo
import zoo.assembly  # noqa: F401  (as above)
from zoo.cards import card, list_models, source_kinds
from zoo.errors import HubOfflineError, ModelNotFoundError
from zoo.weights import hub_weight_files
from zoo.weights.hub import HubFiles, hub_access, hub_file

# Each card whose files only the Hub serves, and the repo it must name.
HUB_CARDS = {
    "blip2-opt-2.7b": "Salesforce/blip2-opt-2.7b",
    "chemberta-zinc-base-v1": "seyonec/ChemBERTa-zinc-base-v1",
    "clap-htsat-unfused": "laion/clap-htsat-unfused",
    "encodec-24khz": "facebook/encodec_24khz",
    "llava-1.5-7b": "llava-hf/llava-1.5-7b-hf",
    "molformer-xl-both-10pct": "ibm-research/MoLFormer-XL-both-10pct",
    "openclip-vit-b-32-laion2b": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    "openclip-vit-b-32-openai": "timm/vit_base_patch32_clip_224.openai",
    "qwen2-audio-7b-instruct": "Qwen/Qwen2-Audio-7B-Instruct",
    "siglip-base-patch16-224": "google/siglip-base-patch16-224",
    "whisper-base-encoder": "openai/whisper-base",
}
FAST_S = 2.0


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache (and modalzoo cache) under ``tmp_path``, HF_HUB_OFFLINE unset."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("MODALZOO_CACHE", str(tmp_path / "modalzoo"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return cache


@pytest.fixture
def hf_hub_offline(empty_hub_cache, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return empty_hub_cache


@pytest.fixture
def no_network(empty_hub_cache, monkeypatch) -> list[str]:
    """HF_HUB_OFFLINE unset, and every Hub request fails the way it does without a network (the DNS lookup
    fails). Returns the URLs that were asked for."""
    asked: list[str] = []

    def unreachable(url: str, *args, **kwargs):
        asked.append(url)
        raise httpx2.ConnectError("[Errno -2] Name or service not known")

    def download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded once the Hub did not answer")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return asked


def fails_fast_with_hub_offline_error(name: str) -> str:
    started = time.perf_counter()
    with pytest.raises(Exception) as raised:
        zoo.load(name)
    assert time.perf_counter() - started < FAST_S
    assert type(raised.value) is HubOfflineError, f"{type(raised.value).__name__} escaped: {raised.value}"
    return str(raised.value)


def test_the_hub_cards_are_those_zoo_list_marks_hub_only():
    assert sorted(n for n in list_models() if source_kinds(card(n)) == ["hub"]) == sorted(HUB_CARDS)


@pytest.mark.parametrize("name", sorted(HUB_CARDS))
def test_a_hub_card_fails_fast_under_hf_hub_offline_naming_files_and_command(name, hf_hub_offline):
    message = fails_fast_with_hub_offline_error(name)
    assert f"cannot load model {name!r}: HF_HUB_OFFLINE is set" in message
    assert str(hf_hub_offline) in message  # the cache that was looked in
    assert "could not get " in message and f"from hf-hub:{HUB_CARDS[name]}" in message
    assert f"`hf download {HUB_CARDS[name]} " in message


@pytest.mark.parametrize("name", sorted(HUB_CARDS))
def test_a_hub_card_fails_fast_when_the_hub_does_not_answer(name, no_network):
    message = fails_fast_with_hub_offline_error(name)
    assert "the Hugging Face Hub cannot be reached (ConnectError: [Errno -2] Name or service not known)" in message
    assert f"`hf download {HUB_CARDS[name]} " in message
    assert len(no_network) == 1  # one request, no retries


def test_the_messages_name_the_exact_files_and_revision(hf_hub_offline):
    openai = fails_fast_with_hub_offline_error("openclip-vit-b-32-openai")
    assert "`hf download timm/vit_base_patch32_clip_224.openai open_clip_model.safetensors`" in openai
    assert "read by spec.towers.image, spec.text_tower" in openai
    whisper = fails_fast_with_hub_offline_error("whisper-base-encoder")
    revision = card("whisper-base-encoder").spec["encoder"]["config"]["revision"]
    assert "could not get config.json, one of (model.safetensors" in whisper
    assert (f"`hf download openai/whisper-base --include '*.json' --include '*.txt' --include '*.model' "
            f"--include '*.safetensors' --include '*.bin' --revision {revision}`") in whisper
    assert "--weights-dir" not in whisper  # its files come through transformers, not a weights folder


def test_card_weights_only_on_the_hub_are_all_named_with_weights_dir(hf_hub_offline):
    message = fails_fast_with_hub_offline_error("llava-1.5-7b")
    shards = " ".join(f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3))
    revision = card("llava-1.5-7b").weights[0].revision
    assert f"`hf download llava-hf/llava-1.5-7b-hf {shards} --revision {revision}`" in message
    assert "--weights-dir DIR" in message and "weights_dir=DIR" in message


def test_a_weight_file_in_weights_dir_needs_no_hub(tmp_path):
    minilm = card("all-minilm-l6-v2")
    hub_only = [dataclasses.replace(w, package=None) for w in minilm.weights]
    assert [need.files for need in hub_weight_files(hub_only)] == [("model.safetensors",)]
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert hub_weight_files(hub_only, tmp_path) == []


def test_a_card_weight_without_its_package_fails_fast_naming_weights_dir(hf_hub_offline):
    minilm = card("all-minilm-l6-v2")
    hub_only = dataclasses.replace(minilm, weights=[dataclasses.replace(w, package=None) for w in minilm.weights])
    with pytest.raises(HubOfflineError, match="(?s)sentence-transformers/all-MiniLM-L6-v2.*--weights-dir"):
        zoo.load(hub_only)


def test_a_download_that_loses_the_network_becomes_hub_offline_error(empty_hub_cache, monkeypatch):
    """The Hub answered the first request, then huggingface_hub gave up on the download itself."""
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *args, **kwargs: None)

    def lost(*args, **kwargs):
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lost)
    with pytest.raises(HubOfflineError, match=r"could not get model.safetensors from hf-hub:org/repo: fetch with "
                                              r"`hf download org/repo model.safetensors`"):
        hub_file("org/repo", "model.safetensors", None)

    def missing(*args, **kwargs):
        raise EntryNotFoundError("404: no such file")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    with pytest.raises(ModelNotFoundError, match="could not get model.safetensors from hf-hub:org/repo") as raised:
        hub_file("org/repo", "model.safetensors", None)
    assert type(raised.value) is ModelNotFoundError


def _cached(cache: Path, repo: str, filename: str) -> HubFiles:
    """``filename`` in the Hugging Face cache layout, as main of ``repo``."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (root / "snapshots" / ("a" * 40) / filename).write_text("{}")
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("a" * 40)
    return HubFiles(repo, None, (filename,))


def test_cached_files_are_read_in_offline_mode_when_the_hub_does_not_answer(no_network, empty_hub_cache):
    need = _cached(empty_hub_cache, "org/tiny", "config.json")
    started = time.perf_counter()
    with hub_access([need], "cannot load org/tiny"):
        assert huggingface_hub.constants.HF_HUB_OFFLINE  # so no library retries the dead network
    assert not huggingface_hub.constants.HF_HUB_OFFLINE
    assert time.perf_counter() - started < FAST_S and len(no_network) == 1


def test_a_card_whose_files_are_cached_loads_at_once_without_the_network(no_network, empty_hub_cache):
    """A Hugging Face cache copied to an air-gapped machine, HF_HUB_OFFLINE unset: transformers alone would
    ask the Hub for every optional file it does not find (adapter_config.json, ...) and retry each for tens of
    seconds; zoo.load asks once, then builds in offline mode."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    revision = card("whisper-base-encoder").spec["encoder"]["config"]["revision"]
    snapshot = empty_hub_cache / "models--openai--whisper-base" / "snapshots" / revision
    WhisperForConditionalGeneration(WhisperConfig(
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=3,
    )).save_pretrained(snapshot)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(snapshot)
    started = time.perf_counter()
    model = zoo.load("whisper-base-encoder")
    assert time.perf_counter() - started < FAST_S and model.encoder.hidden_size == 16
    assert len(no_network) == 1  # only the one request that found the Hub silent
    assert not huggingface_hub.constants.HF_HUB_OFFLINE


def test_a_library_failing_offline_inside_the_build_becomes_hub_offline_error(hf_hub_offline):
    need = _cached(hf_hub_offline, "org/tiny", "config.json")
    with pytest.raises(HubOfflineError, match=r"(?s)not in the Hugging Face cache .*OSError: org/tiny does not "
                                              r"appear to have a file named x.*hf download org/tiny config.json"):
        with hub_access([need], "cannot load org/tiny"):
            raise OSError("org/tiny does not appear to have a file named x") from LocalEntryNotFoundError("x")
    with pytest.raises(ValueError, match="unrelated"):
        with hub_access([need], "cannot load org/tiny"):
            raise ValueError("unrelated")
