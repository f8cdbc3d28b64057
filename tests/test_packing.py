"""Packed batches: the packed attention keeps each example to itself (against an explicit block-diagonal causal
mask and against each example run alone), the model's own attention comes back afterwards, and backbones it
cannot serve are refused by name."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from zoo.training.config import TrainingError
from zoo.training.packing import (
    VARLEN_ATTENTION,
    cu_seq_lens,
    packed_attention,
    varlen_attention,
    varlen_kwargs,
)

LENGTHS = [3, 7, 1, 5]


def _block_diagonal_reference(query, key, value, lengths, scaling):
    """Attention over the whole row with an explicit mask: causal, and only within an example."""
    example = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    position = torch.arange(sum(lengths))
    allowed = (example[:, None] == example[None, :]) & (position[None, :] <= position[:, None])
    key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
    scores = (query @ key.transpose(-1, -2) * scaling).masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ value).transpose(1, 2)


class _Attention(torch.nn.Module):
    pass


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_varlen_attention_equals_a_block_diagonal_causal_mask(kv_heads):
    generator = torch.Generator().manual_seed(0)
    tokens = sum(LENGTHS)
    query = torch.randn(1, 4, tokens, 8, generator=generator)
    key, value = (torch.randn(1, kv_heads, tokens, 8, generator=generator) for _ in range(2))
    module = _Attention().eval()
    output, weights = varlen_attention(module, query, key, value, None, scaling=0.3, **varlen_kwargs(cu_seq_lens(LENGTHS)))
    assert weights is None and output.shape == (1, tokens, 4, 8)
    torch.testing.assert_close(output, _block_diagonal_reference(query, key, value, LENGTHS, 0.3), rtol=1e-5, atol=1e-6)


def test_cu_seq_lens_and_kwargs():
    cu = cu_seq_lens(LENGTHS)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 10, 11, 16]
    assert varlen_kwargs(cu)["max_length_q"] == 7 == varlen_kwargs(cu)["max_length_k"]


def _tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=50, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_a_packed_row_gives_each_example_its_own_logits():
    model = _tiny_llama()
    examples = [torch.randint(0, 50, (n,), generator=torch.Generator().manual_seed(n)) for n in LENGTHS]
    row = torch.cat(examples)[None]
    positions = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    with torch.no_grad():
        with packed_attention(model):
            packed = model(input_ids=row, position_ids=positions, **varlen_kwargs(cu_seq_lens(LENGTHS))).logits[0]
        alone = torch.cat([model(input_ids=e[None]).logits[0] for e in examples])
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)


def test_the_model_attention_is_restored_and_unpacked_calls_are_refused_inside():
    model = _tiny_llama()
    before = model.config._attn_implementation
    with pytest.raises(TrainingError, match="one packed row with cu_seq_lens_q"), packed_attention(model):
        assert model.config._attn_implementation == VARLEN_ATTENTION
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert model.config._attn_implementation == before


def test_sliding_window_attention_is_refused():
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=4, num_key_value_heads=2, vocab_size=50,
                                             sliding_window=4)).eval()
    with pytest.raises(TrainingError, match="sliding_window"), packed_attention(model):
        model(input_ids=torch.arange(6)[None], position_ids=torch.tensor([[0, 1, 2, 0, 1, 2]]),
              **varlen_kwargs(cu_seq_lens([3, 3])))


def test_a_model_whose_attention_cannot_switch_is_refused(monkeypatch):
    model = _tiny_llama()
    monkeypatch.setattr(model, "set_attn_implementation", lambda name: None)  # as transformers does: warn, keep
    with pytest.raises(TrainingError, match="packed batching needs a language model whose attention can be switched"):
        with packed_attention(model):
            pass


def test_gradient_checkpointing_recomputes_the_packed_attention_in_the_backward_pass():
    """With gradient checkpointing the backward pass runs each layer's forward again: the packed attention must
    hold there too (the trainer keeps it over forward and backward), else the gradients are those of a row whose
    examples attend to each other."""
    import zoo
    from zoo.training.data import Example, LMCollator
    from zoo.training.objectives import CausalLMObjective

    torch.manual_seed(0)
    model = zoo.build("tiny-test-vlm")
    model.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    objective = CausalLMObjective(model)
    examples = [Example(index=i, source=f"row {i}", prompt=f"question {i} " * (i + 1), target=f"answer {i}")
                for i in range(3)]
    parameter = model.language_model.get_input_embeddings().weight

    def gradient(batch, outer) -> torch.Tensor:
        parameter.grad = None
        with outer():
            objective(**batch).backward()
        return parameter.grad.clone()

    padded = gradient(LMCollator(model.processor, packed=False)(examples), contextlib.nullcontext)
    row = LMCollator(model.processor, packed=True)(examples)
    torch.testing.assert_close(gradient(row, lambda: packed_attention(model.language_model)), padded,
                               rtol=1e-4, atol=1e-6)
    try:  # without it the recomputation is another attention: torch's checkpoint refuses it, or the gradient is off
        unpacked = gradient(row, contextlib.nullcontext)
    except torch.utils.checkpoint.CheckpointError:
        return
    assert not torch.allclose(unpacked, padded, rtol=1e-4, atol=1e-6)
