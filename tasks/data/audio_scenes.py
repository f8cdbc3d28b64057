"""Procedural audio scenes: 1-3 sound events in a row, with a class label, captions and QA pairs.

The project's own audio-language data, so an audio model can be trained and evaluated end to end without
downloading anything. Every clip is a pure function of ``(seed, index, split)``: the same call writes the same
bytes on every machine, because the synthesis uses only integer draws from a seeded numpy ``Generator``,
IEEE additions and multiplications, and one sine table, then writes 16-bit PCM WAV at 16 kHz (1-3 s).

Events (at most one of each kind per clip, so every question has one answer):

- a **tone** (a sine), a **chime** (four harmonics, struck and decaying) or a **buzz** (eight harmonics,
  sustained), each at a named pitch: low (220 Hz), mid (440 Hz), high (880 Hz)
- a **chirp**, rising or falling; a **noise burst**; 2-4 **clicks**; 2-4 **beeps** in a steady rhythm
- between events a short gap or a long pause (silence, bar a faint noise floor)

The class label is the first event's class ("low tone", "rising chirp", "clicks"; 14 classes). The first event
is also the loudest (the others play at 40-70% of its level), so the label is heard in what comes first and in
what dominates. Three pitch-timbre combinations are held out: ``split="seen"`` never plays them, anywhere in a
clip or its text; in ``split="held-out"`` every clip starts with one (its label) and the rest are seen classes.
Each held-out class combines a pitch and a timbre that are both seen in other classes, so naming it is
compositional zero-shot.

Written per split folder (paths in the manifests are relative to it, as ``tasks.data.manifest`` resolves):

- ``audio/NNNNNN.wav``
- ``classification.jsonl``: ``audio``, ``label``, ``events`` (every event's class, in order)
- ``captions.jsonl``: ``audio``, ``captions`` (the events in order, "A low tone, a pause, then three clicks.",
  then as a set, "Two sounds: a low tone and three clicks.")
- ``qa.jsonl``: ``audio``, ``question``, ``answers`` (the answer ten times, as VQAv2 scoring expects),
  ``answer_type`` (``yes_no``, ``number``, ``other``) and ``question_type``; 4-7 questions per clip
- ``instruct.jsonl``: every caption and QA row as ``instruction`` + ``target``, the instruction equal to what
  the audio-captioning / audio-qa templates put after the audio placeholder
- ``zero-shot-all-classes.yaml``: the zero-shot-audio-classification task over all 14 classes (the held-out
  split's clips are then classified among seen and unseen classes alike)

CLI: ``python -m tasks.data.audio_scenes OUT --n N --seed S [--split seen|held-out]``.
"""

from __future__ import annotations

import argparse
import json
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
MIN_SECONDS = 1.0  # shorter clips are padded with (noise-floor) silence at the end
MAX_EVENTS = 3
PITCHES: dict[str, float] = {"low": 220.0, "mid": 440.0, "high": 880.0}
TIMBRES: tuple[str, ...] = ("tone", "chime", "buzz")
# class name -> (kind, attribute); a clip holds at most one event of each kind
CLASSES: dict[str, tuple[str, str]] = {
    **{f"{pitch} {timbre}": (timbre, pitch) for timbre in TIMBRES for pitch in PITCHES},
    "rising chirp": ("chirp", "rising"),
    "falling chirp": ("chirp", "falling"),
    "noise burst": ("noise", ""),
    "clicks": ("clicks", ""),
    "beeps": ("beeps", ""),
}
HELD_OUT: tuple[str, ...] = ("high tone", "mid chime", "low buzz")  # each pitch and each timbre once
SPLITS: tuple[str, ...] = ("seen", "held-out")
PULSE_KINDS: tuple[str, ...] = ("clicks", "beeps")
COUNT_WORDS: dict[int, str] = {1: "one", 2: "two", 3: "three", 4: "four"}
VQA_ANSWERS = 10
PAUSE_CHANCE = 0.3
SINE = np.round(np.sin(2 * np.pi * np.arange(4096) / 4096) * 2**24) / 2**24  # on a 2^-24 grid: one table everywhere


def _seconds(rng: np.random.Generator, low: float, high: float) -> int:
    """A duration drawn from [low, high] seconds, in samples."""
    return round(rng.uniform(low, high) * SAMPLE_RATE)


def _sine(cycles: np.ndarray) -> np.ndarray:
    """sin(2 pi cycles), looked up in the table (no libm, so the same on every machine)."""
    return SINE[np.floor(cycles * len(SINE)).astype(np.int64) % len(SINE)]


def _ramp(n: int, edge: int) -> np.ndarray:
    """A linear fade in and out over ``edge`` samples at each end (no clicks at the event's edges)."""
    k = np.arange(n, dtype=np.float64)
    return np.minimum(1.0, np.minimum(k + 1, n - k) / edge)


def _harmonics(cycles: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` harmonics of ``cycles``, harmonic ``h`` at amplitude ``1 / h``."""
    return sum(_sine(h * cycles) / h for h in range(1, count + 1))


def _pitched(kind: str, freq: float, n: int) -> np.ndarray:
    """A tone (pure), chime (4 harmonics, struck: cubic decay) or buzz (8 harmonics, sustained) at ``freq``."""
    cycles = freq * np.arange(n) / SAMPLE_RATE
    if kind == "tone":
        return _sine(cycles) * _ramp(n, 160)
    if kind == "chime":
        decay = 1.0 - np.arange(n) / n
        return _harmonics(cycles, 4) * decay * decay * decay * _ramp(n, 80)
    return _harmonics(cycles, 8) * _ramp(n, 160)  # buzz


def _chirp(rising: bool, n: int, rng: np.random.Generator) -> np.ndarray:
    """A linear sweep between about 300 Hz and 2.4 kHz (phase by multiplication only)."""
    low, high = 300.0 * rng.uniform(0.95, 1.05), 2400.0 * rng.uniform(0.95, 1.05)
    start, end = (low, high) if rising else (high, low)
    t = np.arange(n) / SAMPLE_RATE
    duration = n / SAMPLE_RATE
    return _sine(start * t + (end - start) * t * t / (2 * duration)) * _ramp(n, 160)


def _pulses(kind: str, count: int, period: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` clicks (2.5 ms of decaying noise) or beeps (60 ms at 1 kHz), one every ``period`` samples."""
    out = np.zeros(count * period)
    for k in range(count):
        if kind == "clicks":
            pulse = rng.uniform(-1.0, 1.0, 40) * (1.0 - np.arange(40) / 40)
        else:
            pulse = _sine(1000.0 * np.arange(960) / SAMPLE_RATE) * _ramp(960, 80)
        out[k * period : k * period + len(pulse)] = pulse
    return out


@dataclass(frozen=True)
class Event:
    """One sound event: its class, its pulse count (clicks and beeps; 1 otherwise) and whether a long pause
    comes before it."""

    label: str
    count: int = 1
    pause_before: bool = False

    @property
    def kind(self) -> str:
        return CLASSES[self.label][0]

    @property
    def attribute(self) -> str:
        return CLASSES[self.label][1]

    @property
    def phrase(self) -> str:
        """The event in a caption: "a low tone", "three clicks"."""
        return f"{COUNT_WORDS[self.count]} {self.label}" if self.kind in PULSE_KINDS else f"a {self.label}"


@dataclass(frozen=True)
class Clip:
    """A rendered clip: 16-bit samples at :data:`SAMPLE_RATE` and its events in order."""

    samples: np.ndarray
    events: tuple[Event, ...]

    @property
    def label(self) -> str:
        return self.events[0].label


def _render(event: Event, rng: np.random.Generator) -> np.ndarray:
    """The event's samples, peak-normalised to 1."""
    kind, attribute = event.kind, event.attribute
    if kind in TIMBRES:
        samples = _pitched(kind, PITCHES[attribute] * rng.uniform(0.97, 1.03), _seconds(rng, 0.2, 0.4))
    elif kind == "chirp":
        samples = _chirp(attribute == "rising", _seconds(rng, 0.25, 0.4), rng)
    elif kind == "noise":
        n = _seconds(rng, 0.15, 0.3)
        samples = rng.uniform(-1.0, 1.0, n) * _ramp(n, 320)
    else:
        period = _seconds(rng, 0.08, 0.12) if kind == "clicks" else _seconds(rng, 0.12, 0.15)
        samples = _pulses(kind, event.count, period, rng)
    return samples / np.abs(samples).max()


def _pick_events(rng: np.random.Generator, split: str) -> tuple[Event, ...]:
    """1-3 events of distinct kinds; the first from the held-out classes in the held-out split."""
    seen = [c for c in CLASSES if c not in HELD_OUT]
    first_pool = list(HELD_OUT) if split == "held-out" else seen
    labels = [first_pool[int(rng.integers(len(first_pool)))]]
    for _ in range(int(rng.integers(1, MAX_EVENTS + 1)) - 1):
        pool = [c for c in seen if CLASSES[c][0] not in {CLASSES[label][0] for label in labels}]
        labels.append(pool[int(rng.integers(len(pool)))])
    return tuple(
        Event(
            label,
            count=int(rng.integers(2, 5)) if CLASSES[label][0] in PULSE_KINDS else 1,
            pause_before=k > 0 and bool(rng.random() < PAUSE_CHANCE),
        )
        for k, label in enumerate(labels)
    )


def make_clip(seed: int, index: int, split: str = "seen") -> Clip:
    """Clip ``index`` of the set generated with ``seed`` for ``split`` (independent of every other clip)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    rng = np.random.default_rng([seed, index, SPLITS.index(split), 0])
    events = _pick_events(rng, split)
    parts = [np.zeros(_seconds(rng, 0.05, 0.15))]
    for k, event in enumerate(events):
        if k:
            parts.append(np.zeros(_seconds(rng, 0.4, 0.5) if event.pause_before else _seconds(rng, 0.08, 0.15)))
        level = rng.uniform(0.5, 0.7) * (1.0 if k == 0 else rng.uniform(0.4, 0.7))
        parts.append(_render(event, rng) * level)
    parts.append(np.zeros(_seconds(rng, 0.05, 0.15)))
    signal = np.concatenate(parts)
    signal = np.concatenate([signal, np.zeros(max(0, round(MIN_SECONDS * SAMPLE_RATE) - len(signal)))])
    signal = signal + rng.uniform(-0.002, 0.002, len(signal))  # a faint noise floor: no clip is digital silence
    return Clip(np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2"), events)


def write_wav(path: Path, samples: np.ndarray) -> None:
    """Mono 16-bit PCM WAV at :data:`SAMPLE_RATE` with the standard library's writer (a fixed header)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions(clip: Clip) -> list[str]:
    """The events in order ("A low tone, a pause, then three clicks."), then as a set with their number."""
    ordered = clip.events[0].phrase
    for event in clip.events[1:]:
        ordered += (", a pause, then " if event.pause_before else ", then ") + event.phrase
    n = len(clip.events)
    plain = f"{COUNT_WORDS[n]} sound{'s' if n > 1 else ''}: {_join([e.phrase for e in clip.events])}."
    return [ordered[0].upper() + ordered[1:] + ".", plain[0].upper() + plain[1:]]


def _exists_question(label: str) -> str:
    return f"Are there {label}?" if CLASSES[label][0] in PULSE_KINDS else f"Is there a {label}?"


def questions(clip: Clip, split: str, rng: np.random.Generator) -> list[tuple[str, str, str, str]]:
    """(question type, answer type, question, answer) about ``clip``: how many sounds, how many clicks or beeps,
    what comes first, whether a class is there; whether there is a pause (2+ events), the pitch of a tone,
    chime or buzz (if any) and whether the chirp rises (if any). A seen clip's questions never name a held-out
    class."""
    present = {e.label for e in clip.events}
    pulse = PULSE_KINDS[int(rng.integers(len(PULSE_KINDS)))]
    pulses = next((e.count for e in clip.events if e.kind == pulse), 0)
    if rng.random() < 0.5:
        asked, exists = clip.events[int(rng.integers(len(clip.events)))].label, "yes"
    else:
        absent = [c for c in CLASSES if c not in present and (split == "held-out" or c not in HELD_OUT)]
        asked, exists = absent[int(rng.integers(len(absent)))], "no"
    qa = [
        ("count", "number", "How many sounds are there?", str(len(clip.events))),
        ("pulses", "number", f"How many {pulse} are there?", str(pulses)),
        ("first", "other", "What comes first?", clip.label),
        ("exists", "yes_no", _exists_question(asked), exists),
    ]
    if len(clip.events) > 1:
        qa.append(("pause", "yes_no", "Is there a pause?", "yes" if any(e.pause_before for e in clip.events) else "no"))
    pitched = [e for e in clip.events if e.kind in TIMBRES]
    if pitched:
        target = pitched[int(rng.integers(len(pitched)))]
        qa.append(("pitch", "other", f"What pitch is the {target.kind}?", target.attribute))
    chirp = next((e for e in clip.events if e.kind == "chirp"), None)
    if chirp is not None:
        qa.append(("rise", "yes_no", "Does the chirp rise?", "yes" if chirp.attribute == "rising" else "no"))
    return qa


def clip_rows(clip: Clip, audio: str, seed: int, index: int, split: str) -> dict[str, list[dict[str, Any]]]:
    """The manifest rows of one clip, keyed by manifest name (without ``.jsonl``)."""
    rng = np.random.default_rng([seed, index, SPLITS.index(split), 1])
    texts = captions(clip)
    qa = [
        {"audio": audio, "question": q, "answers": [a] * VQA_ANSWERS, "answer_type": answer_type, "question_type": kind}
        for kind, answer_type, q, a in questions(clip, split, rng)
    ]
    instruct = [{"audio": audio, "kind": "captioning", "instruction": "Describe the sound.", "target": " " + texts[0]}]
    instruct += [
        {"audio": audio, "kind": "qa", "instruction": f"Question: {r['question']} Answer:", "target": " " + r["answers"][0]}
        for r in qa
    ]
    return {
        "classification": [{"audio": audio, "label": clip.label, "events": [e.label for e in clip.events]}],
        "captions": [{"audio": audio, "captions": texts}],
        "qa": qa,
        "instruct": instruct,
    }


def zero_shot_task() -> str:
    """A task file that classifies among every class, seen and held out (so chance is 1 in 14)."""
    return (
        "include: zero-shot-audio-classification\n"
        f"description: Procedural audio scenes, zero-shot among all {len(CLASSES)} classes ({len(HELD_OUT)} of them never"
        " in the seen split).\n"
        f"class_names: {json.dumps(list(CLASSES))}\n"
    )


def generate_audio_scenes(out_dir: str | Path, n: int, seed: int, split: str = "seen") -> dict[str, int]:
    """Write ``n`` clips of ``split`` (audio and the manifests above) into ``out_dir``; returns rows per manifest."""
    if n < 1:
        raise ValueError(f"n must be at least 1 clip, got {n}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, Any]]] = {"classification": [], "captions": [], "qa": [], "instruct": []}
    for index in range(n):
        clip = make_clip(seed, index, split)
        audio = f"audio/{index:06d}.wav"
        write_wav(out / audio, clip.samples)
        for name, new in clip_rows(clip, audio, seed, index, split).items():
            rows[name].extend(new)
    for name, manifest in rows.items():
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in manifest)
        (out / f"{name}.jsonl").write_text(text, encoding="utf-8")
    (out / "zero-shot-all-classes.yaml").write_text(zero_shot_task(), encoding="utf-8")
    return {name: len(manifest) for name, manifest in rows.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a procedural audio scene set (WAV clips + manifests).")
    parser.add_argument("out", help="output folder (one split)")
    parser.add_argument("--n", type=int, required=True, help="number of clips")
    parser.add_argument(
        "--seed", type=int, required=True, help="seed; clips are a pure function of (seed, index, split)"
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="seen",
        help="seen (default): no held-out class anywhere; held-out: every clip starts with a held-out class",
    )
    args = parser.parse_args(argv)
    counts = generate_audio_scenes(args.out, args.n, args.seed, args.split)
    print(f"wrote {args.n} {args.split} clips to {args.out}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))


if __name__ == "__main__":
    main()
