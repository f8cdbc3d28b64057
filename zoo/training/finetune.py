"""``zoo.finetune``: fine-tune a model on a task's rows, one process or many (``accelerate launch``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.training.config import TrainingConfig


def finetune(
    model: Any,
    task: Any,
    data: str | Path,
    stage: str | None = None,
    output_dir: str | Path = "runs/finetune",
    *,
    validation_data: str | Path | None = None,
    config: TrainingConfig | None = None,
    **settings: Any,
) -> Any:
    """Fine-tune ``model`` (a model, or a name for ``zoo.load``) on ``task``'s rows in ``data``.

    ``stage`` is ``align``, ``instruct`` (the default) or ``full``. ``settings`` are
    :class:`~zoo.training.config.TrainingConfig` fields (``epochs``, ``max_steps``, ``batch_size``, ``lr``,
    ``lr_groups``, ``batching``, ``eval_every``, ...); they and ``stage`` override ``config``. An unknown
    setting is an error naming the allowed ones. The model is trained in place. An existing run in
    ``output_dir`` is resumed from its newest complete checkpoint (a damaged newer one is passed over with a
    warning; if none is complete, an error). Saved random states that cannot be read are an error unless
    ``allow_rng_reset=True``. Returns a
    :class:`~zoo.training.trainer.FinetuneResult` (the model and a summary); ``output_dir`` gets
    ``final/``, ``checkpoints/``, ``metrics.jsonl``, ``failed_rows.json``, ``training_curve.png`` and
    ``summary.json``.
    """
    from tasks.config import load_task
    from zoo.training.trainer import Trainer

    if isinstance(model, (str, Path)):
        from zoo.loading import load

        model = load(model)
    chosen = {**(config or TrainingConfig()).to_dict(), **settings}
    if stage is not None:
        chosen["stage"] = stage
    resolved = TrainingConfig.from_kwargs(chosen)
    trainer = Trainer(
        model,
        load_task(task),
        Path(data),
        Path(validation_data) if validation_data is not None else None,
        Path(output_dir),
        resolved,
    )
    return trainer.run()
