"""``zoo.finetune``: fine-tune a model on a task's rows, one process or many (``accelerate launch``).

For a task of kind ``property`` an encoder (an ``EncoderModel``, or one tower of a ``DualEncoder``) first gets a
property head shaped by the task (its targets, their type), so ``zoo finetune <encoder card> -t moleculenet-bbbp``
trains a ``Predictor`` that ``zoo eval`` scores and ``zoo.load`` reloads like any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.training.config import TrainingConfig, TrainingError


def add_property_head(model: Any, task: Any, hidden_sizes: Sequence[int] = (), dropout: float = 0.0, seed: int = 0) -> Any:
    """A ``Predictor`` on ``model``'s encoder (shared, not copied) with a head for ``task``'s targets, initialised
    from ``seed``; a model that already has the task's head is returned as it is."""
    import torch

    from zoo.models.predictor import Predictor
    from zoo.processing import ProcessorSet
    from zoo.spec import PredictorSpec
    from zoo.training.stages import is_dual_encoder, is_predictor

    outputs = task.class_names if task.target_type == "multiclass" else task.targets
    if is_predictor(model):
        spec = model.spec
        if (spec.head, spec.classes or spec.targets) != (task.target_type, list(outputs)):
            raise TrainingError(f"this model's head is {spec.head} over {spec.classes or spec.targets}; task "
                                f"{task.name!r} needs {task.target_type} over {list(outputs)}: start from its encoder")
        return model
    kind = getattr(model.spec, "type", None)
    if kind == "encoder":
        modality, encoder, component = model.modality, model.encoder, model.spec.encoder
    elif is_dual_encoder(model):
        towers = {**dict(model.towers.items()), "text": model.text_tower}
        components = {**model.spec.towers, "text": model.spec.text_tower}
        if task.modality not in towers:
            raise TrainingError(f"task {task.name!r} reads {task.modality!r} items; this DualEncoder's towers are "
                                f"{', '.join(towers)}")
        modality, encoder, component = task.modality, towers[task.modality], components[task.modality]
    else:
        raise TrainingError(f"task {task.name!r} puts a property head on an encoder; {type(model).__name__} is not "
                            "an encoder model or a DualEncoder (load an encoder card, e.g. pretrain-gnns-gcn-contextpred)")
    spec = PredictorSpec(modality=modality, encoder=component, targets=list(task.targets), head=task.target_type,
                         classes=list(task.class_names) if task.target_type == "multiclass" else [],
                         hidden_sizes=[int(h) for h in hidden_sizes], dropout=float(dropout), seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        predictor = Predictor(spec, encoder, ProcessorSet({modality: model.processor.processors[modality]}))
    predictor.card_meta = dict(getattr(model, "card_meta", {}))
    return predictor.to(device=model.device, dtype=model.dtype)


def finetune(
    model: Any,
    task: Any,
    data: str | Path,
    stage: str | None = None,
    output_dir: str | Path = "runs/finetune",
    *,
    validation_data: str | Path | None = None,
    config: TrainingConfig | None = None,
    head_hidden_sizes: Sequence[int] = (),
    head_dropout: float = 0.0,
    **settings: Any,
) -> Any:
    """Fine-tune ``model`` (a model, or a name for ``zoo.load``) on ``task``'s rows in ``data``.

    ``stage`` is ``align``, ``instruct`` (the default for a ``MultimodalLM``) or ``full``; with a ``property``
    task, ``head`` (the encoder frozen) or ``full`` (the default). A property task adds a head to an encoder
    model (``head_hidden_sizes``: its MLP widths, ``[]`` for linear; ``head_dropout``), seeded by ``seed``. A
    task with a ``split`` trains on its train part and, with ``eval_every``, validates on its valid part.
    ``settings`` are :class:`~zoo.training.config.TrainingConfig` fields (``epochs``, ``max_steps``,
    ``batch_size``, ``lr``, ``lr_groups``, ``layer_decay``, ``batching``, ``eval_every``, ...); they and
    ``stage`` override ``config``. An unknown setting is an error naming the allowed ones. The model is trained
    in place. An existing run in ``output_dir`` is resumed from its newest complete checkpoint (a damaged newer
    one is passed over with a warning; if none is complete, an error). Saved random states that cannot be read
    are an error unless ``allow_rng_reset=True``. Returns a :class:`~zoo.training.trainer.FinetuneResult` (the
    model and a summary); ``output_dir`` gets ``final/``, ``checkpoints/``, ``metrics.jsonl``,
    ``failed_rows.json``, ``training_curve.png`` and ``summary.json``.
    """
    from tasks.config import load_task
    from zoo.training.trainer import Trainer

    if isinstance(model, (str, Path)):
        from zoo.loading import load

        model = load(model)
    task = load_task(task)
    chosen = {**(config or TrainingConfig()).to_dict(), **settings}
    if stage is not None:
        chosen["stage"] = stage
    elif task.kind == "property" and config is None and "stage" not in settings:
        chosen["stage"] = "full"
    resolved = TrainingConfig.from_kwargs(chosen)
    if task.kind == "property":
        model = add_property_head(model, task, head_hidden_sizes, head_dropout, resolved.seed)
    trainer = Trainer(
        model,
        task,
        Path(data),
        Path(validation_data) if validation_data is not None else None,
        Path(output_dir),
        resolved,
    )
    return trainer.run()
