"""Modality encoders: plain torch modules and their processors. Never imports ``zoo``."""

from encoders.base import MODALITIES, EncoderOutput, InvalidInputError

__all__ = ["MODALITIES", "EncoderOutput", "InvalidInputError"]
