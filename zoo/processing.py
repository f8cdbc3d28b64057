"""The multimodal processor: prompts with placeholders + raw items -> one batch for ``MultimodalLM`` (and,
laid out for an encoder–decoder, ``MultimodalSeq2SeqLM``).

Each placeholder (``<image>``, ``<molecule>``, ...) is expanded to exactly as many placeholder tokens as the
item will produce after encoder and projector. That count comes from the same config objects the model was
built from (``projector.num_tokens(encoder.num_tokens(size))``), and the model checks it again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encoders.base import InvalidInputError

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100
PROJECTOR_TEXT_KEYS = ("text_ids", "text_mask")  # an item's prompt text, for a projector that reads it


class PlaceholderCountError(ValueError):
    """A prompt's placeholders do not match its items (or the model's feature tokens)."""


def move_to(value: Any, device: Any, dtype: torch.dtype | None = None) -> Any:
    """Move tensors (and objects with ``.to``, like a PyG ``Batch``) inside nested dicts to ``device``.

    With ``dtype``, floating-point tensors are cast to it as well: processors give float32 (pixel values, audio
    features, fingerprints) and a bf16 or fp16 model needs its own dtype. Integer and bool tensors (ids, masks,
    indices, lengths) keep theirs. This is the one place that rule lives.
    """
    import torch

    if isinstance(value, Mapping):
        return type(value)({k: move_to(v, device, dtype) for k, v in value.items()})
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype if dtype is not None and value.is_floating_point() else None)
    if dtype is not None and hasattr(value, "apply"):  # a PyG Data/Batch: each of its tensors, in place
        return value.apply(lambda tensor: move_to(tensor, device, dtype))
    return value.to(device) if hasattr(value, "to") else value


class MultimodalBatch(dict):
    """A dict of model inputs (``input_ids``, ``attention_mask``, ``labels``, ``modality_inputs``,
    ``items_per_sample``) with ``.to(device)`` that reaches nested inputs."""

    def to(self, device: Any) -> MultimodalBatch:
        return MultimodalBatch(move_to(dict(self), device))


class MultimodalProcessor:
    """Tokenizer + one processor per modality + the token-count functions of encoders and projectors."""

    def __init__(
        self,
        tokenizer: Any,
        modality_processors: Mapping[str, Any],
        projector_configs: Mapping[str, Any],
        placeholders: Mapping[str, str],
        bos_after_leading_placeholders: bool = False,
        projector_tokenizers: Mapping[str, Any] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.bos_after_leading_placeholders = bos_after_leading_placeholders
        self.projector_tokenizers = dict(projector_tokenizers or {})
        self.modality_processors = dict(modality_processors)
        self.projector_configs = dict(projector_configs)
        self.placeholders = {m: placeholders[m] for m in self.modality_processors}
        missing = [tok for tok in self.placeholders.values() if tok not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens(
                {"additional_special_tokens": missing}, replace_extra_special_tokens=False
            )
        self.placeholder_ids = {m: tokenizer.convert_tokens_to_ids(t) for m, t in self.placeholders.items()}
        alternatives = "|".join(re.escape(t) for t in self.placeholders.values()) or "(?!)"  # none: never splits
        self._split = re.compile(f"({alternatives})")
        self._modality_of = {t: m for m, t in self.placeholders.items()}
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set one before building the processor")

    def num_tokens(self, modality: str, size: Any) -> int:
        """Placeholder tokens for one item of ``modality`` whose processor-reported size is ``size``."""
        encoder_config = self.modality_processors[modality].config
        return self.projector_configs[modality].num_tokens(encoder_config.num_tokens(size))

    def config_dict(self) -> dict[str, Any]:
        """What ``save_pretrained`` writes under ``processor`` in config.json."""
        from zoo.spec import config_to_dict

        return {
            "placeholders": dict(self.placeholders),
            "encoders": {m: config_to_dict(p.config) for m, p in self.modality_processors.items()},
            "projectors": {m: config_to_dict(c) for m, c in self.projector_configs.items()},
        }

    def save_pretrained(self, directory: str | Path) -> None:
        """The LM tokenizer (with placeholders) to ``tokenizer/``, modality tokenizers to ``tokenizers/<m>/``."""
        self.tokenizer.save_pretrained(Path(directory) / "tokenizer")
        save_modality_tokenizers(self.modality_processors, directory)
        for modality, tokenizer in self.projector_tokenizers.items():
            tokenizer.save_pretrained(Path(directory) / "projector_tokenizers" / modality)

    def _process_items(
        self, items: Mapping[str, Sequence[Sequence[Any]]], prompts: Sequence[str]
    ) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
        import torch

        batch_size = len(prompts)
        modality_inputs: dict[str, Any] = {}
        counts: dict[str, list[list[int]]] = {}
        for modality, per_sample in items.items():
            if modality not in self.modality_processors:
                raise InvalidInputError(
                    f"this model has no {modality!r} encoder; it takes: {', '.join(self.modality_processors)}"
                )
            if len(per_sample) != batch_size:
                raise InvalidInputError(
                    f"items[{modality!r}] has {len(per_sample)} entries for {batch_size} prompts; give one "
                    "list of items per prompt"
                )
            flat, owner = [], []
            for i, sample_items in enumerate(per_sample):
                if isinstance(sample_items, (str, bytes)) or not isinstance(sample_items, Sequence):
                    raise InvalidInputError(
                        f"items[{modality!r}][{i}] must be a list of items for prompt {i}, "
                        f"got {type(sample_items).__name__}"
                    )
                flat.extend(sample_items)
                owner.extend((i, k) for k in range(len(sample_items)))
            if not flat:
                continue
            try:
                processed = self.modality_processors[modality](flat)
            except InvalidInputError as err:
                raise InvalidInputError(f"{modality} items of this batch: {err}") from err
            per_item = [self.num_tokens(modality, size) for size in processed.sizes]
            modality_inputs[modality] = {
                **processed.inputs,
                "items_per_sample": torch.tensor([len(s) for s in per_sample], dtype=torch.long),
                "tokens_per_item": torch.tensor(per_item, dtype=torch.long),
                **self._projector_text(modality, [prompts[i] for i, _ in owner]),
            }
            counts[modality] = [[] for _ in range(batch_size)]
            for (i, _), n in zip(owner, per_item, strict=True):
                counts[modality][i].append(n)
        return modality_inputs, counts

    def _projector_text(self, modality: str, prompts: Sequence[str]) -> dict[str, Any]:
        """For a projector with a tokenizer: each item's prompt, placeholders removed, as ``text_ids``/
        ``text_mask`` (the instruction InstructBLIP's Q-Former reads); nothing for any other projector."""
        tokenizer = self.projector_tokenizers.get(modality)
        if tokenizer is None:
            return {}
        encoded = tokenizer([self._split.sub("", p) for p in prompts], padding=True, return_tensors="pt")
        return dict(zip(PROJECTOR_TEXT_KEYS, (encoded["input_ids"], encoded["attention_mask"].bool()), strict=True))

    def _prompt_ids(self, i: int, prompt: str, counts: dict[str, list[list[int]]]) -> list[int]:
        """One prompt's ids: placeholders expanded, the tokenizer's BOS first (or, with
        ``bos_after_leading_placeholders``, after the placeholder tokens that open the prompt)."""
        ids: list[int] = []
        bos_at = 0
        used = dict.fromkeys(self.placeholders, 0)
        for part in self._split.split(prompt):
            if part in self._modality_of:
                modality = self._modality_of[part]
                sample_counts = counts.get(modality, [[]] * (i + 1))[i]
                k = used[modality]
                if k >= len(sample_counts):
                    raise PlaceholderCountError(
                        f"prompt {i} has more {part} placeholders than {modality} items ({len(sample_counts)})"
                    )
                ids.extend([self.placeholder_ids[modality]] * sample_counts[k])
                used[modality] += 1
                if self.bos_after_leading_placeholders and bos_at == len(ids) - sample_counts[k]:
                    bos_at = len(ids)  # still in the opening run of placeholders
            elif part:
                ids.extend(self.tokenizer(part, add_special_tokens=False)["input_ids"])
        for modality, n_used in used.items():
            n_items = len(counts.get(modality, [[]] * (i + 1))[i])
            if n_used != n_items:
                raise PlaceholderCountError(
                    f"prompt {i} has {n_used} {self.placeholders[modality]} placeholder(s) but {n_items} "
                    f"{modality} item(s); put one placeholder in the prompt for each item"
                )
        if self.tokenizer.bos_token_id is not None:
            ids.insert(bos_at, self.tokenizer.bos_token_id)
        return ids

    def _answer_ids(self, target: str) -> list[int]:
        return [*self.tokenizer(target, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]

    def _layout(self, prompt_ids: list[int], answer_ids: list[int] | None) -> tuple[list[int], list[int] | None]:
        """One sample's model input and labels: a causal LM reads the answer after the prompt and is trained
        on the answer tokens only."""
        if answer_ids is None:
            return prompt_ids, None
        return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids

    def _padding_side(self, requested: str) -> str:
        return requested

    def __call__(
        self,
        prompts: Sequence[str],
        items: Mapping[str, Sequence[Sequence[Any]]] | None = None,
        targets: Sequence[str] | None = None,
        padding_side: str = "left",
    ) -> MultimodalBatch:
        """Tokenize ``prompts`` (with ``targets`` as the answers to train on or score), expanding placeholders.

        ``items[modality][i]`` is the list of raw items for prompt ``i``, in the order their placeholders
        appear. With ``targets``, ``labels`` mark only the answer tokens (and EOS); the rest is -100.
        """
        import torch

        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not one string")
        if targets is not None and len(targets) != len(prompts):
            raise ValueError(f"{len(targets)} targets for {len(prompts)} prompts")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        modality_inputs, counts = self._process_items(items or {}, prompts)
        rows = [
            self._layout(self._prompt_ids(i, prompt, counts), None if targets is None else self._answer_ids(targets[i]))
            for i, prompt in enumerate(prompts)
        ]
        side = self._padding_side(padding_side)

        def padded(lines: list[list[int]], value: int) -> torch.Tensor:
            width = max(len(line) for line in lines)
            fill = [[value] * (width - len(line)) for line in lines]
            return torch.tensor([f + line if side == "left" else line + f for line, f in zip(lines, fill, strict=True)],
                                dtype=torch.long)

        sequences = [ids for ids, _ in rows]
        batch = MultimodalBatch(
            input_ids=padded(sequences, self.tokenizer.pad_token_id),
            attention_mask=padded([[1] * len(s) for s in sequences], 0),
            modality_inputs=modality_inputs,
        )
        if targets is not None:
            batch["labels"] = padded([labels for _, labels in rows], IGNORE_INDEX)
        return batch

    def batch_decode(self, token_ids: Any) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(token_ids, skip_special_tokens=True)]


class Seq2SeqProcessor(MultimodalProcessor):
    """The processor of an encoder–decoder (``MultimodalSeq2SeqLM``): the prompt, placeholders expanded as for a
    causal LM and ended by EOS as T5 and BART tokenizers end an input, is the encoder's input; the answer, framed
    as the tokenizer frames a target, is the decoder's ``labels``, padded with -100. The encoder input is always
    right-padded, whatever ``padding_side`` asks: the encoder reads it whole, so generation needs no left padding,
    and right padding keeps absolute positions (BART's) where the model learned them."""

    def __init__(self, tokenizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tokenizer, *args, **kwargs)
        if tokenizer.eos_token_id is None:
            raise ValueError(
                "the tokenizer has no EOS token, which an encoder-decoder needs: it ends every encoder input and "
                "every answer (the decoder learns to stop there). Use a tokenizer that declares one, or set it "
                "before building the processor (BERT's WordPiece declares none: tokenizer.eos_token = '[SEP]')"
            )

    def _answer_ids(self, target: str) -> list[int]:
        """The labels transformers trains this tokenizer's checkpoints on (``tokenizer(text_target=...)``: T5's
        ``answer </s>``, BART's ``<s> answer </s>``), so training and scoring match a fine-tuned checkpoint; ended
        by EOS where the tokenizer's template adds none, as the decoder must learn to stop."""
        ids = self.tokenizer(text_target=target)["input_ids"]
        eos = self.tokenizer.eos_token_id
        return ids if ids[-1:] == [eos] else [*ids, eos]

    def _layout(self, prompt_ids: list[int], answer_ids: list[int] | None) -> tuple[list[int], list[int] | None]:
        return [*prompt_ids, self.tokenizer.eos_token_id], answer_ids

    def _padding_side(self, requested: str) -> str:
        return "right"


class ProcessorSet:
    """One processor per modality, for models without a prompt (``DualEncoder``, ``EncoderModel``)."""

    def __init__(self, processors: Mapping[str, Any]) -> None:
        self.processors = dict(processors)

    def __call__(self, modality: str, items: Sequence[Any]) -> Any:
        if modality not in self.processors:
            raise KeyError(f"no {modality!r} processor; this model takes: {', '.join(self.processors)}")
        return self.processors[modality](items)

    def config_dict(self) -> dict[str, Any]:
        from zoo.spec import config_to_dict

        return {"encoders": {m: config_to_dict(p.config) for m, p in self.processors.items()}}

    def save_pretrained(self, directory: str | Path) -> None:
        save_modality_tokenizers(self.processors, directory)


def save_modality_tokenizers(processors: Mapping[str, Any], directory: str | Path) -> None:
    """Each processor's tokenizer (text, SMILES) to ``tokenizers/<modality>/``, so a load needs nothing else."""
    for modality, processor in processors.items():
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(Path(directory) / "tokenizers" / modality)
