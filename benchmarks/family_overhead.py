"""The wrapper cost of each model family: ``zoo.load("hf:DIR")`` against transformers' own class, same weights.

    .venv/bin/python benchmarks/family_overhead.py [--families llava t5 ...] [--batch 2] [--new-tokens 8]
        [--repeats 31] [--warmup 5] [--threads 1] [--quick]

One entry of :data:`FAMILIES` per family, named by its ``model_type``: a tiny random model built with the
reference class (e.g. ``LlavaForConditionalGeneration``) and saved with ``save_pretrained`` (safetensors) in the
Hub layout with its tokenizer and image processor or feature extractor, then loaded back twice: by the reference
class (``from_pretrained``) and by the zoo (``zoo.load("hf:DIR")``, the family its config.json names). A family
not registered (``zoo.registry.names("family")``) is an error: every row measures the path users take.

Each family gives two lines, measured in one run on the same batch (``--batch`` copies of one prompt, each with
its own image or clip, so nothing is padded):

- ``forward``: one forward pass to the logits (an encoder–decoder's decoder reads a fixed short answer);
- ``generate N``: greedy generation of exactly N new tokens (``min_new_tokens = max_new_tokens = N``, so an
  early end-of-sequence cannot make one side do less work).

Like with like: neither time includes input processing. The zoo's processor (``model.processor``) builds the
batch once, before timing; the reference is called with the same ``input_ids`` and ``attention_mask``, and with
the modality tensors (``pixel_values``, ``image_sizes``, ``input_features`` ...) that transformers' own image
processor or feature extractor makes of the same raw items, also once, before timing. So the zoo time is its
model call alone (encoders, projectors, the placeholder scatter and its checks, then the same transformers
language model). The ``check`` column (``max|dlogit|``, ``same tokens``) shows that both computed the same.

Time: wall time under ``torch.no_grad()`` with ``torch.set_num_threads`` fixed (``--threads``, default 1). After
``--warmup`` calls each, the two calls are timed in ``--repeats`` pairs, which one goes first swapped every pair,
so drift on a shared machine hits both alike. ``ref ms`` and ``zoo ms`` are each side's median; ``ratio`` is the
median of the pairs' zoo / reference ratios, which cancels slow drift better than a ratio of the two medians;
``best`` is the ratio of each side's fastest call, the least disturbed by other jobs. A busy machine makes both
slower and noisier: read ratios a few per cent apart as equal, and rerun before believing one past 1.05.

Memory (MiB) = the model's own bytes + the peak bytes the call allocates. The model's bytes are its parameters
and buffers, each storage counted once (tied weights once; an embedding the zoo resized, at its new size). The
call's peak comes from torch's CPU allocator as the profiler records it (``profile_memory``: each allocation and
free with the allocator's running total): the highest running total over the call less its value at the start,
that is what the call needed at its worst (activations, the KV cache, the logits). It is measured in one more,
untimed call per side (profiling slows calls down), with no earlier output alive. ``call peak`` is the zoo /
reference ratio of the calls' peaks alone, without the models. This counts tensor memory only, not Python objects
or the allocator's fragmentation. The process's peak RSS would count those too, but it is dominated by torch and
transformers themselves (hundreds of MiB against a tiny model's one) and depends on what ran before, so it could
not resolve a 5 % difference. Target for time and memory: zoo / reference <= 1.05 (issue #18).

The rows' models are tiny, so their own compute is small and any fixed per-call cost of the wrapper weighs more
in the time ratio than it would on a real checkpoint. Qwen2-Audio's window is shortened (``WINDOW_S``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/encoders.py would shadow the
# encoders package: put the repository root in its place.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent) if Path(p or ".").resolve() == _HERE else p for p in sys.path]

import argparse  # noqa: E402
import gc  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

TARGET = 1.05
WINDOW_S = 2  # Qwen2-Audio's feature window here, in seconds (see build_qwen2_audio)
PROMPT = "What is in this one? Answer in a few words."
TINY_VIT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
            "image_size": 32, "patch_size": 8}
TINY_LLAMA = {"vocab_size": 640, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
              "tie_word_embeddings": False}
TINY_QFORMER = {"vocab_size": 640, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "intermediate_size": 64, "encoder_hidden_size": TINY_VIT["hidden_size"]}
# tiny-bpe's ids: pad 0, bos 1, eos 2; 608 leaves room for its 600 tokens
TINY_T5 = {"vocab_size": 608, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
           "num_heads": 4, "relative_attention_num_buckets": 8, "relative_attention_max_distance": 32,
           "pad_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 0, "initializer_factor": 5.0}
TINY_BART = {"vocab_size": 608, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
             "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 64,
             "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2,
             "forced_eos_token_id": 2, "init_std": 0.2}


@dataclass(frozen=True)
class Case:
    """What the two sides of one saved checkpoint read: the reference class that loads it, the prompt and the raw
    items (the zoo's processor input), and how transformers' own processors make the reference's tensors."""

    reference_class: type  # transformers' class, loaded back with from_pretrained
    prompt: str  # with the family's placeholder(s), repeated --batch times
    items: dict[str, Callable[[int], list[Any]]]  # modality -> n raw items, one per prompt
    modality_inputs: Callable[[list[Any]], dict[str, torch.Tensor]]  # raw items -> reference tensors
    prompt_extras: Callable[[list[str]], dict[str, torch.Tensor]] | None = None  # prompts -> extra reference inputs
    decoder_prompt: str | None = None  # an encoder–decoder's forward pass reads it as the decoder's input


@dataclass(frozen=True)
class Family:
    """A row: ``name`` is the checkpoint's ``model_type``, so the registry family of that name loads it;
    ``build(directory)`` saves a tiny checkpoint made with the reference class there and returns its
    :class:`Case`."""

    name: str
    build: Callable[[Path], Case]


def _tokenizer(*special: str) -> Any:
    from encoders.text.tokenizers import load_tokenizer

    tokenizer = load_tokenizer("bundled:tiny-bpe")
    if special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(special)})
    return tokenizer


def _images(n: int) -> list[np.ndarray]:
    return [np.random.RandomState(seed).randint(0, 256, (40, 48, 3), dtype=np.uint8) for seed in range(n)]


def _clips(n: int) -> list[tuple[np.ndarray, int]]:
    rng = np.random.RandomState(0)
    return [(rng.uniform(-0.5, 0.5, 16000).astype(np.float32), 16000) for _ in range(n)]


def _save(directory: Path, model: Any, *parts: Any) -> None:
    model.eval().save_pretrained(directory)
    for part in parts:
        part.save_pretrained(directory)


def _pixels(processor: Any) -> Callable[[list[Any]], dict[str, torch.Tensor]]:
    return lambda images: dict(processor(images, return_tensors="pt"))


def _vision_config() -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**TINY_VIT)


def build_llava(directory: Path) -> Case:
    """LLaVA-1.5 (as tests/test_public_cards.py's tiny_llava): CLIP tower, 2-layer MLP, Llama."""
    from transformers import CLIPImageProcessor, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    tokenizer = _tokenizer("<image>")
    config = LlavaConfig(vision_config=_vision_config().to_dict(), text_config=LlamaConfig(**TINY_LLAMA).to_dict(),
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu")
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    _save(directory, LlavaForConditionalGeneration(config), tokenizer, processor)
    return Case(LlavaForConditionalGeneration, f"USER: <image>\n{PROMPT} ASSISTANT:", {"image": _images},
                _pixels(processor))


def build_llava_next(directory: Path) -> Case:
    """LLaVA-NeXT: LLaVA with any-resolution tiling (a 32x64 grid for these 40x48 images) and image_newline."""
    from transformers import (
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
    )

    tokenizer = _tokenizer("<image>")
    grid = [[32, 32], [32, 64], [64, 32], [64, 64]]
    config = LlavaNextConfig(vision_config=_vision_config().to_dict(), text_config=LlamaConfig(**TINY_LLAMA).to_dict(),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=grid,
                             vision_feature_layer=-2, vision_feature_select_strategy="default")
    processor = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                        image_grid_pinpoints=grid)
    _save(directory, LlavaNextForConditionalGeneration(config), tokenizer, processor)
    return Case(LlavaNextForConditionalGeneration, f"[INST] <image>\n{PROMPT} [/INST]", {"image": _images},
                _pixels(processor))


def _blip_configs() -> dict[str, Any]:
    from transformers import Blip2VisionConfig

    return {"vision_config": Blip2VisionConfig(**TINY_VIT).to_dict(), "num_query_tokens": 4}


def build_blip2(directory: Path) -> Case:
    """BLIP-2 (OPT): ViT, Q-Former with 4 query tokens, OPT; the queries' outputs fill the <image> tokens."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2QFormerConfig,
        BlipImageProcessor,
        OPTConfig,
    )

    tokenizer = _tokenizer("<image>")
    opt = OPTConfig(vocab_size=640, hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4,
                    max_position_embeddings=512, word_embed_proj_dim=64, pad_token_id=0, bos_token_id=1,
                    eos_token_id=2)
    config = Blip2Config(**_blip_configs(), qformer_config=Blip2QFormerConfig(**TINY_QFORMER).to_dict(),
                         text_config=opt.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    processor = BlipImageProcessor(size={"height": 32, "width": 32})
    _save(directory, Blip2ForConditionalGeneration(config), tokenizer, processor)
    return Case(Blip2ForConditionalGeneration, f"<image>Question: {PROMPT} Answer:", {"image": _images},
                _pixels(processor))


def build_instructblip(directory: Path) -> Case:
    """InstructBLIP (Vicuna): BLIP-2 whose Q-Former also reads the instruction (its own tokenizer, saved in
    ``qformer_tokenizer/``), and a Llama LM."""
    from transformers import (
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipQFormerConfig,
        LlamaConfig,
    )

    tokenizer, qformer_tokenizer = _tokenizer("<image>"), _tokenizer()
    config = InstructBlipConfig(**_blip_configs(), qformer_config=InstructBlipQFormerConfig(**TINY_QFORMER).to_dict(),
                                text_config=LlamaConfig(**TINY_LLAMA).to_dict(),
                                image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    processor = BlipImageProcessor(size={"height": 32, "width": 32})
    _save(directory, InstructBlipForConditionalGeneration(config), tokenizer, processor)
    qformer_tokenizer.save_pretrained(directory / "qformer_tokenizer")

    def qformer_inputs(prompts: list[str]) -> dict[str, torch.Tensor]:
        encoded = qformer_tokenizer([p.replace("<image>", "") for p in prompts], return_tensors="pt")
        return {"qformer_input_ids": encoded["input_ids"], "qformer_attention_mask": encoded["attention_mask"]}

    return Case(InstructBlipForConditionalGeneration, f"<image>{PROMPT}", {"image": _images},
                _pixels(processor), qformer_inputs)


def build_qwen2_audio(directory: Path) -> Case:
    """Qwen2-Audio: Whisper-style tower (128 mel bins, pooled by 2), linear projector, Qwen2. The window is
    ``WINDOW_S`` seconds, not the real 30: the tower reads the whole window whatever the clip's length, and a
    tiny tower on 30 s would make this row a benchmark of one attention over 1,500 frames."""
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2Config,
        WhisperFeatureExtractor,
    )

    tokenizer = _tokenizer("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")
    tower = Qwen2AudioEncoderConfig(num_mel_bins=128, d_model=32, encoder_layers=2, encoder_attention_heads=2,
                                    encoder_ffn_dim=64, max_source_positions=WINDOW_S * 50)
    config = Qwen2AudioConfig(audio_config=tower.to_dict(), text_config=Qwen2Config(**TINY_LLAMA).to_dict(),
                              audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    extractor = WhisperFeatureExtractor(feature_size=128, chunk_length=WINDOW_S)
    _save(directory, Qwen2AudioForConditionalGeneration(config), tokenizer, extractor)

    def features(clips: list[tuple[np.ndarray, int]]) -> dict[str, torch.Tensor]:
        out = extractor([clip for clip, _ in clips], sampling_rate=16000, padding="max_length",
                        return_attention_mask=True, return_tensors="pt")
        return {"input_features": out["input_features"], "feature_attention_mask": out["attention_mask"]}

    return Case(Qwen2AudioForConditionalGeneration, f"<|audio_bos|><|AUDIO|><|audio_eos|>{PROMPT}",
                {"audio": _clips}, features)


def build_t5(directory: Path) -> Case:
    """T5 (text to text): the prompt is the encoder's input."""
    from transformers import T5Config, T5ForConditionalGeneration

    _save(directory, T5ForConditionalGeneration(T5Config(**TINY_T5)), _tokenizer())
    return Case(T5ForConditionalGeneration, PROMPT, {}, lambda items: {}, decoder_prompt="a red square")


def build_bart(directory: Path) -> Case:
    """BART (text to text): the prompt, framed ``<s> text </s>`` as BART's tokenizer frames it, is the encoder's
    input; decoding starts from ``</s>``."""
    from transformers import BartConfig, BartForConditionalGeneration

    tokenizer = _tokenizer()
    tokenizer.add_bos_token, tokenizer.add_eos_token = True, True
    _save(directory, BartForConditionalGeneration(BartConfig(**TINY_BART)), tokenizer)
    return Case(BartForConditionalGeneration, PROMPT, {}, lambda items: {}, decoder_prompt="a red square")


FAMILIES: tuple[Family, ...] = (
    Family("llava", build_llava),
    Family("llava_next", build_llava_next),
    Family("blip-2", build_blip2),
    Family("instructblip", build_instructblip),
    Family("qwen2_audio", build_qwen2_audio),
    Family("t5", build_t5),
    Family("bart", build_bart),
)


@dataclass(frozen=True)
class Timing:
    """Median milliseconds of each side, the median of the pairs' zoo / reference ratios, and the ratio of the
    two sides' fastest calls."""

    reference_ms: float
    zoo_ms: float
    ratio: float
    best_ratio: float


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers, each storage once (tied weights share one)."""
    storages = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def peak_call_bytes(call: Callable[[], Any]) -> int:
    """The most bytes torch's CPU allocator held for ``call`` at once, over what it held when the call began.
    (The profiler without kineto: it records each allocation with the allocator's running total, and starts at
    once, where kineto's first start takes seconds probing for GPUs.)"""
    from torch._C._profiler import _EventType

    gc.collect()
    with torch.autograd.profiler.profile(use_kineto=False, profile_memory=True) as prof:
        call()
    stack, events = list(prof.kineto_results.experimental_event_tree()), []
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size, node.extra_fields.total_allocated))
    if not events:
        return 0
    events.sort()
    start = events[0][2] - events[0][1]
    return max(total for _, _, total in events) - start


def interleaved_ms(reference: Callable[[], Any], ours: Callable[[], Any], warmup: int, repeats: int) -> Timing:
    """Both calls timed in pairs (which goes first swapped every repeat) after ``warmup`` calls each."""
    for _ in range(warmup):
        reference()
        ours()
    pairs = []
    for repeat in range(repeats):
        pair = {}
        for name, call in (("ref", reference), ("zoo", ours))[:: 1 if repeat % 2 == 0 else -1]:
            started = time.perf_counter()
            call()
            pair[name] = (time.perf_counter() - started) * 1e3
        pairs.append(pair)
    ref_ms, zoo_ms = [p["ref"] for p in pairs], [p["zoo"] for p in pairs]
    return Timing(statistics.median(ref_ms), statistics.median(zoo_ms),
                  statistics.median(z / r for r, z in zip(ref_ms, zoo_ms, strict=True)), min(zoo_ms) / min(ref_ms))


@dataclass(frozen=True)
class Line:
    """One measured line of the table: the timing, and per side (reference, zoo) the model's bytes and the
    call's peak bytes."""

    label: str
    time: Timing
    weights: tuple[int, int]
    peaks: tuple[int, int]
    check: str


def measure(family: Family, directory: Path, args: argparse.Namespace) -> list[Line]:
    """The two lines of one family, its zoo model loaded with ``zoo.load("hf:DIR")``."""
    import zoo
    from zoo import registry

    torch.manual_seed(0)
    case = family.build(directory)
    if family.name not in registry.names("family"):
        raise SystemExit(f"no {family.name!r} family is registered (zoo.registry.names('family')); the row measures "
                         "zoo.load('hf:DIR') through it")
    reference = case.reference_class.from_pretrained(directory).eval()
    model = zoo.load(f"hf:{directory}").eval()

    prompts = [case.prompt] * args.batch
    raw = {modality: make(args.batch) for modality, make in case.items.items()}
    batch = model.processor(prompts, {m: [[item] for item in items] for m, items in raw.items()}, padding_side="left")
    theirs: dict[str, Any] = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    for items in raw.values():
        theirs |= case.modality_inputs(items)
    if case.prompt_extras is not None:
        theirs |= case.prompt_extras(prompts)
    tokenizer = model.processor.tokenizer
    decoder: dict[str, torch.Tensor] = {}
    if case.decoder_prompt is not None:
        answer = tokenizer(case.decoder_prompt, add_special_tokens=False)["input_ids"]
        decoder["decoder_input_ids"] = torch.tensor([[reference.config.decoder_start_token_id, *answer]] * args.batch)
    greedy = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False,
              "num_beams": 1, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    sides: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "forward": (lambda: reference(**theirs, **decoder).logits, lambda: model(**batch, **decoder).logits),
        f"generate {args.new_tokens}": (lambda: reference.generate(**theirs, **greedy),
                                        lambda: model.generate(**batch, **greedy)),
    }
    weights = (model_bytes(reference), model_bytes(model))
    lines = []
    with torch.no_grad():
        for label, (ref_call, zoo_call) in sides.items():
            ref_out, zoo_out = ref_call(), zoo_call()
            if ref_out.shape[:1] != zoo_out.shape[:1] or ref_out.shape[-1] < zoo_out.shape[-1]:
                check = f"shapes differ: {tuple(ref_out.shape)} vs {tuple(zoo_out.shape)}"
            elif label == "forward":
                check = f"max|dlogit| {(ref_out - zoo_out).abs().max().item():.1e}"
            else:  # the reference returns the prompt (or the decoder's start) before the new tokens
                check = f"same tokens: {torch.equal(ref_out[:, -zoo_out.shape[1]:], zoo_out)}"
            del ref_out, zoo_out
            timing = interleaved_ms(ref_call, zoo_call, args.warmup, args.repeats)
            peaks = (peak_call_bytes(ref_call), peak_call_bytes(zoo_call))
            lines.append(Line(f"{family.name} {label}", timing, weights, peaks, check))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=[f.name for f in FAMILIES],
                        choices=[f.name for f in FAMILIES])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 repeats, 1 warm-up, 2 new tokens")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup, args.new_tokens = 2, 1, 2
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as transformers_logging

    from zoo import registry

    transformers_logging.disable_progress_bar()  # "Loading weights" bars would break up the table's output
    registered = registry.names("family")
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, median of {args.repeats} after "
          f"{args.warmup} warm-up; registered families: {', '.join(registered)}")
    lines: list[Line] = []
    with tempfile.TemporaryDirectory() as scratch:
        for family in (f for f in FAMILIES if f.name in args.families):
            lines += measure(family, Path(scratch) / family.name, args)
    print(f"{'':26s} {'time':^31s}  {'memory: model + call peak':^26s} {'call':>6}")
    print(f"{'family':26s} {'ref ms':>8} {'zoo ms':>8} {'ratio':>6} {'best':>6}  {'ref MiB':>8} {'zoo MiB':>8} "
          f"{'ratio':>6} {'peak':>6}  check")
    for line in lines:
        (ref_w, zoo_w), (ref_p, zoo_p) = line.weights, line.peaks
        ref_mib, zoo_mib = (ref_w + ref_p) / 2**20, (zoo_w + zoo_p) / 2**20
        t = line.time
        print(f"{line.label:26s} {t.reference_ms:8.2f} {t.zoo_ms:8.2f} {t.ratio:6.3f} {t.best_ratio:6.3f}  "
              f"{ref_mib:8.3f} {zoo_mib:8.3f} {zoo_mib / ref_mib:6.3f} {zoo_p / max(ref_p, 1):6.3f}  {line.check}")
    print(f"target: zoo / reference <= {TARGET} in time and in memory (time ratio: the median of the paired "
          "ratios; best: of the fastest calls; call peak: the calls' peaks alone, without the models)")


if __name__ == "__main__":
    main()
