"""The training loop, built on Hugging Face accelerate: ``Accelerator`` (devices, DDP/FSDP/DeepSpeed, mixed
precision, gradient accumulation), ``prepare``, ``save_state``/``load_state`` and ``skip_first_batches``.

One optimizer step consumes ``grad_accum`` global batches of the seeded batch plan (see ``data.py``).
accelerate splits each global batch across processes (``split_batches``), so 1 and N processes see the
same examples per step, and the loss is normalised by the step's answer tokens over all processes and
micro-batches (known in advance from the plan), so its value and gradient do not depend on the split.

Resuming loads the newest complete checkpoint (weights, optimizer, scheduler, RNG states; one that does not
match its manifest is passed over with a warning) and skips the micro-batches it had consumed; the plan is a
pure function of the seed, so the resumed run takes the same batches in the same order and ends with the same
weights, bit for bit, as a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasks.config import TaskConfig, load_task
from zoo.io import atomic_write
from zoo.training.checkpoint import (
    WEIGHTS_FILE,
    Checkpoints,
    base_fingerprint,
    check_base,
    load_trainable,
    save_weights_dir,
)
from zoo.training.config import TrainingConfig, TrainingError
from zoo.training.data import (
    ExampleDataset,
    LMCollator,
    PlanSampler,
    TrainingData,
    batch_plan,
    build_examples,
    frozen_tower_features,
    make_collator,
    plan_sha256,
)
from zoo.training.logs import METRICS_FILE, MetricsLog
from zoo.training.objectives import make_objective
from zoo.training.optim import build_optimizer, build_scheduler
from zoo.training.packing import packed_attention
from zoo.training.plots import PLOT_FILE, plot_training_curve
from zoo.training.stages import (
    apply_stage,
    encoders_of,
    is_dual_encoder,
    is_predictor,
    is_seq2seq_lm,
    merge_lora,
    set_train_mode,
)

FAILED_ROWS_FILE = "failed_rows.json"
SUMMARY_FILE = "summary.json"


@dataclass
class Position:
    """Where a run stands: optimizer steps and micro-batches done, and the early-stopping state."""

    step: int = 0
    micro_batches: int = 0
    loss: float | None = None
    best_value: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False


@dataclass
class FinetuneResult:
    """The trained model (trained in place; LoRA merged unless ``merge_lora=False``) and what happened."""

    model: nn.Module
    output_dir: Path
    final_dir: Path
    steps: int
    total_steps: int
    epochs: float
    loss: float | None
    trainable_parameters: int
    num_examples: int
    failed_rows: list[dict[str, Any]] = field(default_factory=list)
    best_step: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    resumed_from_step: int | None = None

    def summary(self) -> dict[str, Any]:
        """Everything but the model, JSON-ready (written to ``summary.json``)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        return {**data, "output_dir": str(self.output_dir), "final_dir": str(self.final_dir)}


def _accelerator(config: TrainingConfig, find_unused_parameters: bool) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    if config.mixed_precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise TrainingError("this GPU has no bfloat16 support; use mixed_precision='no'")
    return Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum,
        dataloader_config=DataLoaderConfiguration(split_batches=True, even_batches=False),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )


def _has_unused_encoders(model: nn.Module, task: TaskConfig) -> bool:
    """Whether the model has encoders the task never feeds (DDP must then look for unused parameters)."""
    used = (1 if task.modality else 0) + is_dual_encoder(model)  # a DualEncoder always uses its text tower
    return len(encoders_of(model)) > used


def _shards_parameters(accelerator: Any) -> bool:
    """FSDP and DeepSpeed ZeRO-3 keep only a shard of each parameter on a process."""
    from accelerate.utils import DistributedType

    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type == DistributedType.FSDP or (plugin is not None and plugin.zero_stage == 3)


def _step_tokens(plan: list[list[int]], data: TrainingData, accum: int) -> list[int]:
    """Answer tokens per optimizer step (the loss denominator), from the plan."""
    sizes = [sum(data.examples[i].label_tokens for i in batch) for batch in plan]
    return [sum(sizes[s : s + accum]) for s in range(0, len(sizes), accum)]


def _check_packing(objective: nn.Module, collator: LMCollator, examples: list[Any], device: Any) -> None:
    """A packed row must give the padded rows' loss; a backbone that ignores the packed layout does not."""
    from zoo.processing import move_to

    objective.eval()
    with torch.no_grad():
        packed = objective(**move_to(collator(examples), device))
        padded = objective(**move_to(LMCollator(collator.processor, packed=False)(examples), device))
    set_train_mode(objective.model)
    if not torch.allclose(packed, padded, rtol=1e-4, atol=1e-4):
        raise TrainingError(
            f"packed batching changes this language model's loss ({float(packed):.6f} vs {float(padded):.6f} padded): "
            "its attention crosses example boundaries or ignores packed position ids; use batching='padded' or 'length-grouped'"
        )


def _check_resume(saved: dict[str, Any], expected: dict[str, Any], config: TrainingConfig, where: Path) -> None:
    check_base(saved["base"], expected["base"], where)
    changed = config.differences(saved["config"])
    if changed:
        raise TrainingError(
            f"{where} was written with other training settings ({', '.join(changed)}); run with the same settings, "
            "or use a new output_dir (or resume=False) to start over"
        )
    for key, what in (("data_sha256", "training data"), ("validation_sha256", "validation data"), ("plan_sha256", "batch plan")):
        if saved[key] != expected[key]:
            raise TrainingError(f"the {what} changed since {where} was written; restore it, or use a new output_dir")


def _card_meta(model: nn.Module, task: TaskConfig, config: TrainingConfig, steps: int, data_sha: str) -> dict[str, Any]:
    base = getattr(model, "card_meta", {})
    name = base.get("name") or type(model).__name__
    return {
        "name": f"{name}-{config.stage}",
        "description": f"{name} fine-tuned ({config.stage}) on task {task.name}",
        "license": base.get("license", "unknown"),
        "body": f"Fine-tuned from `{name}` by `zoo.finetune`: stage `{config.stage}`, {steps} optimizer steps, "
        f"task `{task.name}`, training data sha256 `{data_sha}`.\n",
    }


class Trainer:
    """One fine-tuning run: set up from the config, resume if a checkpoint exists, train, save."""

    def __init__(
        self,
        model: nn.Module,
        task: TaskConfig,
        data: Path,
        validation_data: Path | None,
        output_dir: Path,
        config: TrainingConfig,
    ) -> None:
        from accelerate.utils import set_seed

        from zoo.evaluation.evaluate import data_sha256

        self.model, self.task, self.config = model, task, config
        self.output_dir = output_dir
        # a task that splits its file validates on the file's valid part unless validation data is given
        split = task.split_spec
        self.validation_task = task if validation_data is not None or split is None else load_task(task, **{"split.part": "valid"})
        self.validation_data = validation_data if validation_data is not None or split is None else data
        if config.eval_every is not None and self.validation_data is None:
            raise TrainingError("eval_every needs validation_data (or a task whose split has a valid part)")
        self.accelerator = _accelerator(config, _has_unused_encoders(model, task))
        if config.batch_size % self.accelerator.num_processes:
            raise TrainingError(
                f"batch_size {config.batch_size} (the global batch) cannot be split over "
                f"{self.accelerator.num_processes} processes; use a multiple of {self.accelerator.num_processes}"
            )
        self.sharded = _shards_parameters(self.accelerator)
        if self.sharded and config.eval_every is not None:
            raise TrainingError(
                "validation during training needs every process to hold the whole model (DDP, DeepSpeed ZeRO-1/2); "
                "under FSDP or ZeRO-3 leave eval_every unset and evaluate final/ after training"
            )
        if self.accelerator.state.deepspeed_plugin is not None:  # our batch sampler hides the per-process batch
            self.accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = (
                config.batch_size // self.accelerator.num_processes
            )
        set_seed(config.seed)
        self.identity = {
            "base": base_fingerprint(model),
            "data_sha256": data_sha256(data),
            "validation_sha256": data_sha256(self.validation_data) if self.validation_data else None,
        }
        self.trainable_parameters = apply_stage(model, config)
        self.data = build_examples(model, task, data)
        if not self.data.examples:
            first = self.data.failed_rows[0]
            raise TrainingError(
                f"none of the {self.data.num_rows} rows of {data} can be used; the first ({first['source']}) failed "
                f"at {first['stage']}: {first['error']}"
            )
        if config.batching != "padded" and (is_dual_encoder(model) or is_predictor(model)):
            raise TrainingError(f"batching={config.batching!r} is for MultimodalLM; a {type(model).__name__} batch is "
                                "fixed-size (use 'padded')")
        if config.batching == "packed" and is_seq2seq_lm(model):
            raise TrainingError("batching='packed' is for causal LMs; an encoder–decoder would attend across the packed "
                                "examples (use 'padded' or 'length-grouped')")
        if is_predictor(model):  # a regression head standardises with the training labels' mean and std
            model.set_target_scale(torch.tensor([e.labels for e in self.data.examples], dtype=torch.float64))
        per_step = config.batch_size * config.grad_accum
        self.total_steps = config.max_steps or math.ceil(config.epochs * len(self.data.examples) / per_step)
        self.examples_per_step = per_step
        self.plan = batch_plan(
            [e.length for e in self.data.examples], config.batch_size, self.total_steps * config.grad_accum,
            config.seed, grouped=config.batching == "length-grouped",
        )
        self.identity["plan_sha256"] = plan_sha256(self.plan)
        self.step_tokens = _step_tokens(self.plan, self.data, config.grad_accum)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def run(self) -> FinetuneResult:
        from torch.utils.data import DataLoader

        config, accelerator = self.config, self.accelerator
        objective = make_objective(self.model)
        optimizer = build_optimizer(self.model, config)
        scheduler = build_scheduler(optimizer, config, self.total_steps)
        cached = frozen_tower_features(self.model, self.data.examples, config.batch_size,
                                       config.progress and self.main) if config.cache_frozen_features else None
        collator = cached or make_collator(self.model, config)
        loader = DataLoader(
            ExampleDataset(self.data.examples), batch_sampler=PlanSampler(self.plan, config.batch_size), collate_fn=collator
        )
        objective, optimizer, loader, scheduler = accelerator.prepare(objective, optimizer, loader, scheduler)
        self.objective = objective
        if config.batching == "packed":
            _check_packing(accelerator.unwrap_model(objective), collator,
                           [self.data.examples[i] for i in self.plan[0]], accelerator.device)
        checkpoints = Checkpoints(accelerator, self.output_dir / "checkpoints", self.model, config.keep_checkpoints)
        position, resumed = self._resume(checkpoints)
        log = MetricsLog(self.output_dir / METRICS_FILE, self.main)
        log.start(self._header(), resumed)
        if self.main:
            text = json.dumps(self.data.failed_rows, indent=2) + "\n"
            atomic_write(self.output_dir / FAILED_ROWS_FILE, lambda tmp: tmp.write_text(text))
        if position.step < self.total_steps and not position.stopped_early:
            batches = loader
            if position.micro_batches:
                # The loader draws its seed from the global generator when its first batch is taken. The restored
                # random states were saved after the interrupted run's own draw, so this one must not move them
                # (else every dropout mask after the resume shifts by one draw).
                remaining = iter(accelerator.skip_first_batches(loader, position.micro_batches))
                with torch.random.fork_rng(devices=[]):
                    first = next(remaining)
                batches = itertools.chain([first], remaining)
            self._train(objective, optimizer, scheduler, batches, checkpoints, log, position)
        return self._finish(position, resumed, log)

    def _header(self) -> dict[str, Any]:
        return {
            "event": "data",
            "num_rows": self.data.num_rows,
            "num_examples": len(self.data.examples),
            "num_failed_rows": len(self.data.failed_rows),
            "failed_rows_file": FAILED_ROWS_FILE,
            "total_steps": self.total_steps,
            "trainable_parameters": self.trainable_parameters,
        }

    def _resume(self, checkpoints: Checkpoints) -> tuple[Position, int | None]:
        """Start fresh only when there is no checkpoint at all; else continue from the newest complete one."""
        if checkpoints.list() and not self.config.resume:
            raise TrainingError(
                f"{checkpoints.root} holds checkpoints of an earlier run; resume=True continues it, or use a new output_dir"
            )
        latest = checkpoints.latest_complete()
        if latest is None:
            return Position(), None
        saved = checkpoints.state(latest)
        _check_resume(saved, self.identity, self.config, latest)
        position = Position(**saved["position"])
        # a reset reseeds from seed + step, so the resumed steps do not replay the first steps' random draws
        checkpoints.load(latest, self.config.allow_rng_reset, self.config.seed + position.step)
        return position, position.step

    def _state(self, position: Position) -> dict[str, Any]:
        seen = position.micro_batches * self.config.batch_size
        return {
            "format": 1,
            "position": dataclasses.asdict(position),
            "examples_seen": seen,
            "epoch": seen / len(self.data.examples),
            **self.identity,
            "config": self.config.to_dict(),
        }

    def _train(self, objective: Any, optimizer: Any, scheduler: Any, batches: Any, checkpoints: Checkpoints,
               log: MetricsLog, position: Position) -> None:
        from tqdm.auto import tqdm

        config, accelerator = self.config, self.accelerator
        mean_loss = is_dual_encoder(self.model) or is_predictor(self.model)  # the objective gives the batch's mean
        world, accum = accelerator.num_processes, config.grad_accum
        bar = tqdm(total=self.total_steps, initial=position.step, unit="step", desc="finetune",
                   disable=not (config.progress and self.main))
        window = torch.zeros((), device=accelerator.device)
        started = time.perf_counter()
        packed = config.batching == "packed"
        for batch in batches:
            tokens = self.step_tokens[position.step]
            # a packed row's attention must stay within each example in the backward pass too, where gradient
            # checkpointing runs the forward again (the objective switches it for its own forward only)
            attention = packed_attention(self.model.language_model) if packed else contextlib.nullcontext()
            with accelerator.accumulate(objective), attention:
                out = objective(**batch)
                # Contrastive and property: each micro-batch's loss is already a mean. LM: summed over this process's
                # answer tokens, scaled so that DDP's mean over processes and accelerate's division by
                # grad_accum leave (sum over the whole step) / (answer tokens of the whole step).
                loss = out if mean_loss else out * (world * accum / tokens)
                window += out.detach() / accum if mean_loss else out.detach()
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    norm = accelerator.clip_grad_norm_(objective.parameters(), config.max_grad_norm)
                    grad_norm = None if norm is None else float(norm)  # DeepSpeed clips inside its engine
                lr = config.lr * scheduler.get_last_lr()[0] / optimizer.param_groups[0]["initial_lr"]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            position.micro_batches += 1
            if not accelerator.sync_gradients:
                continue
            position.step += 1
            total = accelerator.reduce(window, reduction="mean" if mean_loss else "sum")
            position.loss = float(total) if mean_loss else float(total) / tokens
            window.zero_()
            record = {
                "step": position.step,
                "epoch": position.micro_batches * config.batch_size / len(self.data.examples),
                "loss": position.loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "samples_per_s": config.batch_size * accum / (time.perf_counter() - started),
            }
            if self._validates_at(position.step):
                record.update(self._validate(position))
            log.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{position.loss:.4f}", samples_s=f"{record['samples_per_s']:.1f}")
            last = position.step == self.total_steps or position.stopped_early
            if last or position.step % config.save_every == 0:
                checkpoints.save(position.step, self._state(position))
            if position.stopped_early:
                break
            started = time.perf_counter()  # samples/s counts training only, not validation or saving
        bar.close()

    def _validates_at(self, step: int) -> bool:
        """Every ``eval_every`` steps; with ``"epoch"``, at the step that completes each pass over the training
        examples (epochs run on without a short last batch, so that step is where the example count crosses
        a multiple of the data size)."""
        every = self.config.eval_every
        if every != "epoch":
            return bool(every) and step % every == 0
        size = len(self.data.examples)
        return (step * self.examples_per_step) // size > ((step - 1) * self.examples_per_step) // size

    def _validate(self, position: Position) -> dict[str, Any]:
        """Evaluate on the validation data; track the best value of the early-stopping metric."""
        from zoo.evaluation.evaluate import evaluate

        with self.accelerator.autocast():
            results = evaluate(self.model, self.validation_task, self.validation_data, batch_size=self.config.batch_size,
                               limit=self.config.eval_limit, progress=False, report=False)
        set_train_mode(self.model)
        metrics = results["metrics"]
        name = self.config.early_stopping_metric
        if name is not None:
            if name not in metrics:
                raise TrainingError(f"early_stopping_metric {name!r} is not a metric of task {self.task.name!r}; "
                                    f"it reports: {', '.join(metrics)}")
            value = float(metrics[name])
            better = position.best_value is None or (
                value > position.best_value if self.config.early_stopping_mode == "max" else value < position.best_value
            )
            if better:
                position.best_value, position.best_step, position.evals_since_best = value, position.step, 0
                if self.main:
                    save_weights_dir(self.model, self.output_dir / "best", {
                        "step": position.step, "metric": name, "value": value, "base": self.identity["base"],
                        "config": self.config.to_dict(),
                    })
                self.accelerator.wait_for_everyone()
            else:
                position.evals_since_best += 1
                patience = self.config.early_stopping_patience
                position.stopped_early = patience is not None and position.evals_since_best >= patience
        return {"validation": metrics, "validation_failed_rows": results["num_failed"]}

    def _finish(self, position: Position, resumed: int | None, log: MetricsLog) -> FinetuneResult:
        """Restore the best weights (with early stopping), write ``final/``, the plot and ``summary.json``."""
        config = self.config
        if position.best_step is not None:
            load_trainable(self.model, self.output_dir / "best" / WEIGHTS_FILE)
        final = self.output_dir / "final"
        unmerged = config.stage == "instruct" and not config.merge_lora
        exported = self._gathered_copy() if self.sharded else self.model  # None off the main process when sharded
        if exported is not None and not unmerged:
            merge_lora(exported)
        if self.main:
            exported.card_meta = _card_meta(self.model, self.task, config, position.step, self.identity["data_sha256"])
            if unmerged:
                save_weights_dir(exported, final, {"base": self.identity["base"], "config": config.to_dict()})
            else:
                exported.save_pretrained(final)
            plot_training_curve(log.records(), self.output_dir / PLOT_FILE, config.early_stopping_metric)
        self.model.eval()
        result = FinetuneResult(
            model=self.model,
            output_dir=self.output_dir,
            final_dir=final,
            steps=position.step,
            total_steps=self.total_steps,
            epochs=position.micro_batches * config.batch_size / len(self.data.examples),
            loss=position.loss,
            trainable_parameters=self.trainable_parameters,
            num_examples=len(self.data.examples),
            failed_rows=self.data.failed_rows,
            best_step=position.best_step,
            best_value=position.best_value,
            stopped_early=position.stopped_early,
            resumed_from_step=resumed,
        )
        if self.main:
            text = json.dumps(result.summary(), indent=2) + "\n"
            atomic_write(self.output_dir / SUMMARY_FILE, lambda tmp: tmp.write_text(text))
        self.accelerator.wait_for_everyone()
        return result

    def _gathered_copy(self) -> nn.Module | None:
        """Under FSDP / ZeRO-3: the full trained weights (a collective call) in a fresh copy on the main process."""
        from zoo.loading import build

        state = self.accelerator.get_state_dict(self.objective)
        if not self.main:
            return None
        copy = build(self.model.spec)
        apply_stage(copy, self.config)
        copy.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
        return copy
