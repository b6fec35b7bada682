"""OpenVINO through optimum-intel: a cached IR, compiled with the settings a specialist sets for one latency stream
(or, option `own_streams` under load, for the case's streams in one process, as benchmark_app -nstreams does).

The execution precision is always set, never left to the device: on a CPU with AVX512_BF16 OpenVINO's default is
bf16, so an fp32 case asks for f32. int8 runs its int8 IR with an f32 hint, so only the quantization differs from fp32.
The measured call is optimum-intel's model class, or (option `call`) the bare compiled model it compiled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from bench.backends.base import Backend
from bench.backends.feed import graph_feed
from bench.backends.openvino.ir import IrArtifacts, ov_model_class, read_ir
from bench.backends.options import Options
from bench.measure.timing import timed

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
ONEDNN_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
"""The variables that cap oneDNN's ISA, which OpenVINO's CPU plugin reads too (docs/cpus.md)."""

READ_BACK = (
    "INFERENCE_NUM_THREADS",
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "INFERENCE_PRECISION_HINT",
    "ENABLE_CPU_PINNING",
    "EXECUTION_DEVICES",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE",  # not set: the CPU's default quantizes activations of int8-weight layers
)


class OpenvinoOptions(Options):
    OMITTED_AT_DEFAULT = ("call", "own_streams")

    int8_mode: Literal["weights", "static"] = Field(
        "weights", description="int8: NNCF weight compression, or static quantization calibrated on synthetic inputs."
    )
    static_shape: bool = Field(False, description="Reshape to the case's batch x seq before compiling.")
    compiled_cache: bool = Field(False, description="Keep compiled blobs (OpenVINO CACHE_DIR) in the bench cache.")
    calibration_samples: int = Field(8, ge=1, description="Static int8: synthetic calibration samples.")
    calibration_seq_len: int = Field(128, ge=1, description="Static int8: sequence length of each sample.")
    call: Literal["optimum", "compiled"] = Field(
        "optimum",
        description="The call measured: optimum-intel's OVModelFor<task>, or the bare openvino.CompiledModel it"
        " compiled, called on the IR's inputs.",
    )
    own_streams: bool = Field(
        False,
        description="Under load (offline, server, closed-loop) with more than one stream: OpenVINO's own streams"
        " (NUM_STREAMS, the THROUGHPUT hint, an infer request per stream) in one process on all the streams' CPUs,"
        " as benchmark_app -nstreams runs, instead of a worker process per stream.",
    )


class OpenvinoBackend(
    Backend,
    name="openvino",
    options_model=OpenvinoOptions,
    precisions=("fp32", "bf16", "int8"),
    thread_family="openvino",
    requires=("openvino",), records=("optimum", "optimum-intel", "openvino", "nncf"),
    generates=True,
    pipelines=True,
    builds_ahead=True,
):
    def load(self) -> None:
        import openvino

        self.openvino = openvino
        ov_model_class(self.case.task)  # optimum-intel imports lazily: its import time belongs to load, not here

    def prepare(self, inputs) -> None:
        artifacts = IrArtifacts(self.job, self.options)
        folder = artifacts.get()
        self.take(artifacts)
        generating = self.case.generating
        self.model, self.timings["read_ms"] = timed(
            lambda: read_ir(folder, self.case.task, self.ov_config(), generating=generating)
        )
        self.apply_static_shape()
        _, self.timings["compile_ms"] = timed(self.compile)
        self.reported = self.read_back()
        self.call = self.make_call(inputs)
        self.stream_calls = self.make_stream_calls(inputs) if self.case.own_streams else None

    def make_stream_calls(self, inputs) -> list:
        """An infer request of the compiled model per stream, its input tensors set once to a private copy of the IR's
        inputs (as benchmark_app fills them), each called from a thread of its own: an infer call releases the GIL.
        Never `infer(feed)` on the case's arrays: optimum-intel's request shares their memory, and a copy into
        another request's inputs was seen to overwrite them."""
        import numpy as np

        if self.case.generating or self.case.pipelined:
            raise ValueError(
                "option own_streams: true serves forward-pass calls on infer requests of one compiled model; a"
                " generation or pipeline case calls optimum-intel's model class, one request (own_streams: false)"
            )
        compiled = self.compiled_model()
        feed = graph_feed([i.get_any_name() for i in compiled.inputs], inputs, "the OpenVINO IR")
        requests = [compiled.create_infer_request() for _ in range(self.case.streams)]
        for request in requests:
            for port in compiled.inputs:
                request.set_tensor(port, self.openvino.Tensor(np.array(feed[port.get_any_name()], copy=True)))
        self.details["own_streams"] = {"infer_requests": len(requests), "call": "compiled (an infer request each)"}
        return [request.infer for request in requests]

    def make_call(self, inputs):
        if self.case.generating:
            if self.options.call != "optimum":
                raise ValueError(
                    f"option call: {self.options.call!r} times one inference; a generation case times whole generate"
                    " calls of optimum-intel's OVModelForCausalLM (call: optimum)"
                )
            return None
        if self.options.call == "compiled":
            compiled = self.compiled_model()
            feed = graph_feed([i.get_any_name() for i in compiled.inputs], inputs, "the OpenVINO IR")
            return lambda: compiled(feed)
        import torch

        tensors = {name: torch.from_numpy(value) for name, value in inputs.items()}
        return lambda: self.model(**tensors)

    def ov_config(self) -> dict:
        """The thread translation plus the precision hint, and the compiled-blob cache if asked for."""
        hint = PRECISION_HINTS[self.case.precision]
        config = {**self.threads, "INFERENCE_PRECISION_HINT": hint}
        if self.options.compiled_cache:
            # one folder per hint: OpenVINO's blob key leaves the hint out, and an f32 blob loaded for bf16 gives NaN
            config["CACHE_DIR"] = str(Path(self.job.cache_dir) / "openvino-compiled" / hint)
        return config

    def apply_static_shape(self) -> None:
        if not self.options.static_shape:
            return
        if self.case.task == "text-generation":
            self.warnings.append("static_shape is not applied: optimum-intel keeps causal LMs dynamic")
            return
        self.model.reshape(self.case.batch_size, self.case.seq_len)
        self.details["static_shape"] = [self.case.batch_size, self.case.seq_len]

    def compile(self) -> None:
        try:
            self.model.compile()
        except RuntimeError as exc:
            if not self.details.get("static_shape"):
                raise
            first = next((line for line in str(exc).splitlines()[::-1] if line.strip()), "")
            raise RuntimeError(
                f"OpenVINO could not compile the IR reshaped to {self.details['static_shape']} ({first.strip()}); "
                "the same IR may compile with static_shape: false"
            ) from exc

    def generate_model(self):
        """OVModelForCausalLM over the stateful IR: transformers' generate, the KV cache kept in the infer request."""
        return self.model

    def run(self):
        return self.call()

    def hidden_state(self):
        names = [output.get_any_name() for output in self.model.model.outputs]
        return f"the OpenVINO IR's outputs are {names}: no last hidden state among them"

    def compiled_model(self):
        request = self.model.request
        return request if isinstance(request, self.openvino.CompiledModel) else request.get_compiled_model()

    def read_back(self) -> dict:
        """The compiled model's own answer for each setting; a mismatch with what was asked becomes a warning."""
        compiled = self.compiled_model()
        reported = {key: plain(compiled.get_property(key)) for key in READ_BACK}
        if self.options.compiled_cache:
            self.details["compiled_from_cache"] = bool(compiled.get_property("LOADED_FROM_CACHE"))
        asked = self.ov_config()
        if reported["INFERENCE_NUM_THREADS"] == 0:
            self.warnings.append("OpenVINO reports INFERENCE_NUM_THREADS 0 (chosen by the plugin), not a count")
            asked.pop("INFERENCE_NUM_THREADS")
        for key in READ_BACK:
            if key in asked and str(reported[key]) != str(asked[key]):
                self.warnings.append(f"asked OpenVINO for {key}={asked[key]}, it reports {reported[key]}")
        capped = [f"{name}={os.environ[name]}" for name in ONEDNN_CAPS if name in os.environ]
        if capped:
            self.warnings.append(
                f"{', '.join(capped)}: OpenVINO's CPU plugin caps its oneDNN primitives by it but picks its kernels from"
                " the CPU itself; on a bigger CPU its bf16 can fail to compile and its int8 return empty outputs"
            )
        return reported

    def precision_mode(self) -> dict:
        """From the IR's constants and nodes and the execution precision the compiled model reports."""
        from bench.backends.precision_mode import openvino_mode

        return openvino_mode(self.model.model, self.reported["INFERENCE_PRECISION_HINT"], self.case.precision)

    def effective(self) -> dict:
        from importlib import metadata

        return {
            "threads": self.reported["INFERENCE_NUM_THREADS"],
            **self.reported,
            "call": self.options.call,
            "openvino": self.openvino.get_version(),
            "optimum-intel": metadata.version("optimum-intel"),
            "nncf": metadata.version("nncf"),
        }


def plain(value):
    """A property value as JSON: element types by their short name (f32, bf16), enums and lists as text."""
    if hasattr(value, "get_type_name"):
        return value.get_type_name()
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)
