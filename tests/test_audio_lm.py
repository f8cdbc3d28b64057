"""The bundled audio language models (codec tokens, and the log-mel comparison) load offline, answer a freshly
generated clip with an answer of the right kind, and beat the answer prior and the constant caption on clips
generated here.

The baselines are fitted on the very clips they are scored on (a prior that has seen these answers), so they
are at least as strong as the ones in the cards.
"""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from tasks.data.audio_scenes import COUNT_WORDS, generate_audio_scenes
from tasks.data.scene_baselines import constant_caption_metrics, vqa_prior_accuracy

CLIPS = 24
CARDS = ("audio-lm-tiny", "audio-lm-tiny-mel")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio-scenes")
    generate_audio_scenes(folder, CLIPS, seed=20261123)
    return folder


def _rows(folder, name):
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", CARDS)
def test_card_answers_a_generated_clip(name, clips):
    model = zoo.load(name)
    audio = str(clips / "audio" / "000000.wav")
    prompts = ["<audio> Question: How many sounds are there? Answer:", "<audio> Describe the sound."]
    count, caption = model.generate_text(prompts, {"audio": [[audio], [audio]]}, max_new_tokens=64)
    assert count.strip() in {"1", "2", "3"}, count
    assert caption.strip().endswith(".") and caption.split()[0] in {"A", *(w.capitalize() for w in COUNT_WORDS.values())}, caption


@pytest.mark.parametrize("name", CARDS)
def test_card_beats_the_answer_prior_and_the_constant_caption(name, clips):
    model = zoo.load(name)
    # the tasks' own answer budgets: the longest answer takes 10 tiny-bpe tokens, the longest caption 52
    qa = zoo.evaluate(model, "audio-qa", clips / "qa.jsonl", batch_size=64, progress=False, report=False)
    rows = _rows(clips, "qa")
    assert qa["num_failed"] == 0
    assert qa["metrics"]["vqa_accuracy"] > vqa_prior_accuracy(rows, rows) + 0.25
    captions = zoo.evaluate(model, "audio-captioning", clips / "captions.jsonl", batch_size=64, progress=False,
                            report=False)
    constant = constant_caption_metrics(_rows(clips, "captions"), _rows(clips, "captions"))
    assert captions["metrics"]["bleu4"] > constant["bleu4"] + 0.4
    assert captions["metrics"]["meteor_exact"] > constant["meteor_exact"] + 0.4
