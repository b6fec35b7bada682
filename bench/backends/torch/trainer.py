"""The guide's Trainer flags: evaluation through `Trainer(args=TrainingArguments(use_ipex=..., jit_mode_eval=...,
bf16=..., use_cpu=True))`, as transformers 4.52 implements them.

Preparation is the Trainer's own: `_wrap_model(training=False)` (what evaluate() and predict() call first) applies
ipex.optimize (bf16 weights when bf16), then traces and freezes the model on the first batch of the eval dataloader.
The measured call is `trainer.prediction_step` on the case's batch as the dataloader collates it: what evaluate()
runs per batch (no_grad, the Trainer's autocast when it keeps one, outputs gathered as logits). One whole
trainer.predict() on that batch is timed apart as `predict_ms`: the Trainer prepares the model again on every call.
"""

from __future__ import annotations

import tempfile

from pydantic import Field

from bench.backends.options import Options
from bench.backends.torch.common import (
    TORCH,
    FROZEN_OUTPUTS,
    IpexUser,
    child_processes,
    configure_torch,
    import_ipex,
    ipex_cpu_refusal,
    torch_effective,
)
from bench.measure.loading import load_model, select_outputs
from bench.measure.timing import timed


class TrainerOptions(Options):
    use_ipex: bool = Field(True, description="TrainingArguments(use_ipex=...): ipex.optimize through the Trainer.")
    jit_mode_eval: bool = Field(True, description="TrainingArguments(jit_mode_eval=...): trace + freeze for eval.")


class TrainerBackend(
    IpexUser,
    name="trainer",
    options_model=TrainerOptions,
    precisions=("fp32", "bf16"),
    requires=(*TORCH, "accelerate", "intel_extension_for_pytorch"),
):
    def load(self) -> None:
        configure_torch(self.threads)
        if self.options.use_ipex:  # imported by the Trainer anyway; timed apart from its preparation
            _, self.timings["ipex_import_ms"] = timed(import_ipex)
        self.model = load_model(self.job, attn_implementation="eager")
        if self.case.task == "text-generation":
            self.model.config.use_cache = False  # evaluation batches carry no KV cache

    def prepare(self, inputs) -> None:
        self.rows = rows_of(inputs)
        self.trainer = make_trainer(self.model, self.options, self.case.precision, len(self.rows))
        dataloader = self.trainer.get_eval_dataloader(self.rows)
        self.batch = self.trainer._prepare_inputs(next(iter(dataloader)))
        with ipex_cpu_refusal():
            self.module, self.timings["wrap_model_ms"] = timed(
                lambda: self.trainer._wrap_model(self.trainer.model, training=False, dataloader=dataloader)
            )
        self.check_preparation()
        _, self.timings["predict_ms"] = timed(lambda: self.trainer.predict(self.rows))

    def check_preparation(self) -> None:
        import torch

        scripted = isinstance(self.module, torch.jit.ScriptModule)
        self.details["torchscript"] = scripted
        self.details["autocast_per_call"] = bool(self.trainer.use_cpu_amp)
        if self.options.jit_mode_eval:
            self.timings["trainer_jit_ms"] = 1000 * getattr(self.trainer, "jit_compilation_time", 0.0)
            if not scripted:
                self.warnings.append("jit_mode_eval fell back to the eager model (the Trainer's warning is in the log)")

    def run(self):
        _, logits, _ = self.trainer.prediction_step(self.module, self.batch, prediction_loss_only=False)
        return logits

    def outputs(self, raw):
        return select_outputs(self.case.task, raw if isinstance(raw, (tuple, list)) else (raw,))

    def hidden_state(self):
        import torch

        from bench.measure.hidden_state import hook_or_reason

        return FROZEN_OUTPUTS if isinstance(self.module, torch.jit.ScriptModule) else hook_or_reason(self.module)

    def precision_mode(self) -> dict:
        from bench.backends.precision_mode import torch_mode

        return torch_mode(self.model, self.case.precision, autocast=bool(self.trainer.use_cpu_amp))

    def effective(self) -> dict:
        import torch

        args = self.trainer.args
        return {
            **torch_effective(),
            "threads": torch.get_num_threads(),
            "use_ipex": args.use_ipex,
            "jit_mode_eval": args.jit_mode_eval,
            "bf16": args.bf16,
            "device": str(args.device),
            "weights_dtype": str(next(self.model.parameters()).dtype),
            "child_processes": child_processes(),
        }


def rows_of(inputs: dict) -> list[dict]:
    """The case's batch as a dataset of examples; the default collator stacks them back into the same batch."""
    import torch

    batch = len(next(iter(inputs.values())))
    return [{name: torch.from_numpy(value[i]) for name, value in inputs.items()} for i in range(batch)]


def make_trainer(model, options: TrainerOptions, precision: str, batch_size: int):
    from transformers import Trainer, TrainingArguments

    output_dir = tempfile.TemporaryDirectory(prefix="bench-trainer-")
    args = TrainingArguments(
        output_dir=output_dir.name,
        use_cpu=True,
        use_ipex=options.use_ipex,
        jit_mode_eval=options.jit_mode_eval,
        bf16=precision == "bf16",
        per_device_eval_batch_size=batch_size,
        dataloader_pin_memory=False,
        report_to=[],
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args)
    trainer._bench_output_dir = output_dir  # removed when the worker exits
    return trainer

