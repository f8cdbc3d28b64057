"""Audio encoders (neural-codec tokens, Whisper, CLAP, a spectrogram transformer), their processors, audio
loading (``load_audio``) and the length policy (``CropPolicy``)."""

from encoders.audio.crop import CropPolicy
from encoders.audio.io import load_audio

__all__ = ["CropPolicy", "load_audio"]
