"""ONNX Runtime through Optimum's ORTModelFor<task>: a cached ONNX export, one session sized to the case.

The session gets the thread translation (intra-op threads, one inter-op thread, sequential execution, intra-op
spinning), every graph optimization ORT has (ORT_ENABLE_ALL) and the CPU provider; the measured call is Optimum's
model class without I/O binding, or (option `call`) the bare session. What the row reports is read back from the
created session, not echoed from the request.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from bench.backends.base import Backend
from bench.backends.feed import graph_feed
from bench.backends.onnxruntime.artifacts import OnnxArtifacts, artifact_kind
from bench.backends.onnxruntime.calls import CALLS
from bench.backends.options import Options
from bench.measure.timing import timed

ORT_CLASSES = {
    "feature-extraction": "ORTModelForFeatureExtraction",
    "text-classification": "ORTModelForSequenceClassification",
    "question-answering": "ORTModelForQuestionAnswering",
    "text-generation": "ORTModelForCausalLM",
}
SPINNING_KEY = "session.intra_op.allow_spinning"


class OnnxruntimeOptions(Options):
    OMITTED_AT_DEFAULT = ("call", "int8_recipe")

    optimization_level: Optional[Literal["O1", "O2", "O3"]] = Field(
        None,
        description="fp32: Optimum's offline graph optimizer (O1 basic, O2 + transformer fusions, O3 + approximate"
        " GELU, not fp32-exact) before the session; none: ORT's own ORT_ENABLE_ALL at session creation only."
        " O4 (fp16) is for GPUs.",
    )
    per_channel: bool = Field(True, description="int8: one scale per output channel of each weight, not per tensor.")
    int8_recipe: Literal["auto", "avx512_vnni", "avx512", "avx2", "arm64"] = Field(
        "auto",
        description="int8: Optimum's AutoQuantizationConfig for dynamic quantization; auto chooses from the CPU"
        " (avx512_vnni with VNNI, AVX-VNNI or AMX-INT8; avx512 with reduce_range on AVX-512 without VNNI; avx2,"
        " u8u8 with reduce_range, otherwise; arm64 on ARM).",
    )
    call: Literal["optimum", "session", "iobinding"] = Field(
        "optimum",
        description="The call measured: Optimum's ORTModelFor<task>, the bare InferenceSession.run, or"
        " run_with_iobinding over inputs and outputs bound once.",
    )

    @field_validator("optimization_level", mode="before")
    @classmethod
    def _not_o4(cls, value):
        if value == "O4":
            raise ValueError("expected 'O1', 'O2', 'O3' or null, got 'O4' (fp16 mixed precision, for GPUs only)")
        return value


def ort_model_class(task: str):
    import optimum.onnxruntime

    return getattr(optimum.onnxruntime, ORT_CLASSES[task])


class OnnxruntimeBackend(
    Backend,
    name="onnxruntime",
    options_model=OnnxruntimeOptions,
    precisions=("fp32", "int8"),
    thread_family="onnxruntime",
    requires=("onnxruntime",), records=("optimum", "optimum-onnx", "onnxruntime"),
    generates=True,
    pipelines=True,
    builds_ahead=True,
):
    def load(self) -> None:
        import onnxruntime

        self.ort = onnxruntime
        ort_model_class(self.case.task)  # optimum imports torch and transformers: that time belongs to load

    def prepare(self, inputs) -> None:
        artifacts = OnnxArtifacts(self.job, self.options)
        folder = artifacts.get()
        self.take(artifacts)
        self.model, self.timings["session_ms"] = timed(lambda: self.open_session(folder))
        self.session = self.model.model
        if self.case.generating:
            if self.options.call != "optimum":
                raise ValueError(
                    f"option call: {self.options.call!r} times one session call; a generation case times whole"
                    " generate calls of Optimum's ORTModelForCausalLM (call: optimum)"
                )
            self.call = None
        else:
            feed = graph_feed(self.model.input_names, inputs, "the ONNX graph")
            self.call = CALLS[self.options.call](self.model, feed)
        self.reported = self.read_back()

    def session_options(self):
        ort, settings = self.ort, self.threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings["intra_op_num_threads"]
        options.inter_op_num_threads = settings["inter_op_num_threads"]
        options.execution_mode = getattr(ort.ExecutionMode, settings["execution_mode"])
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(SPINNING_KEY, "1" if settings["intra_op_spinning"] else "0")
        return options

    def open_session(self, folder):
        extra = {"use_cache": self.case.generating} if self.case.task == "text-generation" else {}
        return ort_model_class(self.case.task).from_pretrained(
            folder,
            provider="CPUExecutionProvider",
            session_options=self.session_options(),
            use_io_binding=False,
            **extra,
        )

    def run(self):
        return self.call()

    def generate_model(self):
        """ORTModelForCausalLM over the with-past export: transformers' generate, the past kept as ORT outputs."""
        return self.model

    def outputs(self, raw):
        return super().outputs(self.call.named(raw))

    def hidden_state(self):
        names = [output.name for output in self.session.get_outputs()]
        return f"the ONNX graph's outputs are {names}: no last hidden state among them"

    def read_back(self) -> dict:
        """The session's own record of its options; a mismatch with what was asked becomes a warning."""
        options = self.session.get_session_options()
        reported = {
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "execution_mode": options.execution_mode.name,
            "graph_optimization_level": options.graph_optimization_level.name,
            "intra_op_spinning": options.get_session_config_entry(SPINNING_KEY),
            "providers": self.session.get_providers(),
            "use_io_binding": self.call.uses_io_binding if self.call is not None else bool(self.model.use_io_binding),
        }
        if reported["intra_op_num_threads"] == 0:
            self.warnings.append("ORT reports intra_op_num_threads 0 (its own choice), not a thread count")
        for key in ("intra_op_num_threads", "inter_op_num_threads", "execution_mode"):
            if str(reported[key]) != str(self.threads[key]):
                self.warnings.append(f"asked ONNX Runtime for {key}={self.threads[key]}, it reports {reported[key]}")
        if reported["providers"] != ["CPUExecutionProvider"]:
            self.warnings.append(f"asked for CPUExecutionProvider only, the session has {reported['providers']}")
        return reported

    def precision_mode(self) -> dict:
        """int8 is Optimum's dynamic quantization (is_static=False): int8 weights, u8 activations quantized per call,
        by the recipe (AutoQuantizationConfig) chosen for the CPU or by the suite, which the label names."""
        from bench.backends.precision_mode import DYNAMIC_INT8, NATIVE, mode

        if artifact_kind(self.case.precision, self.options) == "int8":
            recipe = self.details["quantization"]["preset"]
            return {**mode("int8", "int8", DYNAMIC_INT8), "recipe": recipe, "label": f"int8 dynamic ({recipe})"}
        return mode("fp32", "fp32", NATIVE)

    def effective(self) -> dict:
        from importlib import metadata

        threads = self.reported["intra_op_num_threads"]
        return {
            "threads": threads or None,
            **self.reported,
            "call": self.options.call,
            "onnxruntime": self.ort.__version__,
            "optimum-onnx": metadata.version("optimum-onnx"),
        }
