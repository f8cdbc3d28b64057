"""Fine-tuning: ``finetune`` (stages align / instruct / full on accelerate + peft), adapters, and weight-space
merging (``zoo.training.merge``) and LoRAMoE (``zoo.training.loramoe``)."""

from zoo.training.checkpoint import load_adapter
from zoo.training.config import TrainingConfig, TrainingError
from zoo.training.finetune import finetune
from zoo.training.stages import merge_lora
from zoo.training.trainer import FinetuneResult

__all__ = ["FinetuneResult", "TrainingConfig", "TrainingError", "finetune", "load_adapter", "merge_lora"]
