"""What a case really computed: the weights' dtype, the compute dtype and how the precision was obtained.

"bf16" covers several techniques that run different arithmetic at different costs: autocast over fp32 weights
(re-cast on every call), casts frozen into a traced graph, weights converted to bf16, a runtime hint. A row records
its mode, read from what the backend built, and tables and plots show and group by the mode's short label.
"""

from __future__ import annotations

from collections import Counter

NATIVE = "native"
AUTOCAST = "autocast"
FROZEN_CASTS = "frozen casts"
CONVERTED = "converted weights"
CONVERTED_AUTOCAST = "converted weights + autocast"
HINT = "runtime hint"
WEIGHT_ONLY_INT8 = "weight-only int8"
DYNAMIC_INT8 = "dynamic int8"
STATIC_INT8 = "static int8"

LABELS = {
    AUTOCAST: "{compute} autocast",
    FROZEN_CASTS: "{compute} traced casts",
    CONVERTED: "{weights} weights",
    CONVERTED_AUTOCAST: "{weights} weights+autocast",
    HINT: "{compute} hint",
    WEIGHT_ONLY_INT8: "int8 weight-only",
    DYNAMIC_INT8: "int8 dynamic",
    STATIC_INT8: "int8 static",
}
SHORT_DTYPES = {
    "float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "f16": "fp16",
    "int8": "int8", "i8": "int8", "uint8": "int8", "u8": "int8", "int4": "int4", "i4": "int4", "u4": "int4",
}  # fmt: skip


def short_dtype(name) -> str:
    """torch.bfloat16, 'bf16', <Type: 'float32'> ... → bf16, fp32; unknown names as they are."""
    text = str(name).removeprefix("torch.").strip("<>'")
    return SHORT_DTYPES.get(text, text)


def mode(weights: str | None, compute: str | None, how: str) -> dict:
    """The row's `precision_mode`: weights and compute dtypes, how, and the label tables show."""
    weights, compute = weights and short_dtype(weights), compute and short_dtype(compute)
    return {"weights": weights, "compute": compute, "how": how, "label": label_of(weights, compute, how)}


def label_of(weights: str | None, compute: str | None, how: str) -> str:
    if how == NATIVE:
        return str(compute or weights)
    template = LABELS.get(how)
    return template.format(weights=weights, compute=compute) if template else f"{compute} {how}"


def torch_weights_dtype(model) -> str | None:
    """The dtype most elements of the matrix products' weights are stored in: every floating-point parameter but
    the embeddings' (looked up, not multiplied; autocast leaves them fp32), unless there is nothing else."""
    import torch

    embedded = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    parameters = [p for p in model.parameters() if p.is_floating_point()]
    return dominant(parameters, lambda p: id(p) not in embedded) or dominant(parameters, lambda p: True)


def dominant(tensors, keep) -> str | None:
    counts: Counter = Counter()
    for tensor in tensors:
        if keep(tensor):
            counts[str(tensor.dtype)] += tensor.numel()
    return short_dtype(counts.most_common(1)[0][0]) if counts else None


def torch_mode(model, precision: str, autocast: bool) -> dict:
    """A torch module run with or without bf16 autocast, from its parameters' dtype."""
    weights = torch_weights_dtype(model)
    if precision != "bf16":
        return mode(weights, weights, NATIVE)
    if weights == "bf16":
        return mode(weights, "bf16", CONVERTED_AUTOCAST if autocast else CONVERTED)
    return mode(weights, "bf16" if autocast else weights, AUTOCAST if autocast else NATIVE)


MATRIX_OPS = ("aten::linear", "aten::matmul", "aten::addmm", "aten::mm", "aten::bmm", "ipex", "mkldnn")


def graph_constants_dtype(graph) -> str | None:
    """The dtype of a frozen TorchScript graph's weights: its floating-point tensor constants that feed a matrix
    product (the embeddings and norms stay fp32 under autocast), or all of them when none does."""
    constants = []
    for node in graph.nodes():
        if node.kind() == "prim::Constant" and "value" in node.attributeNames() and node.kindOf("value") == "t":
            tensor = node.t("value")
            if tensor.is_floating_point():
                feeds = any(use.user.kind().startswith(MATRIX_OPS) for use in node.output().uses())
                constants.append((tensor, feeds))
    tensors = [tensor for tensor, _ in constants]
    feeding = {id(tensor) for tensor, feeds in constants if feeds}
    return dominant(tensors, lambda t: id(t) in feeding) or dominant(tensors, lambda t: True)


def openvino_constants(ov_model) -> Counter:
    """Bytes of the IR's constants by element type: weight compression shows as u8/i8/u4/i4 constants."""
    counts: Counter = Counter()
    for op in ov_model.get_ops():
        if op.get_type_name() == "Constant":
            element = op.get_element_type()
            counts[element.get_type_name()] += op.get_byte_size()
    return counts


def openvino_mode(ov_model, hint: str, precision: str) -> dict:
    """From the IR (FakeQuantize nodes for static int8, the constants' element types for weights) and the
    execution precision the compiled model reports."""
    constants = openvino_constants(ov_model)
    total = sum(constants.values()) or 1
    compressed = [(n, b) for n, b in constants.items() if short_dtype(n) in ("int8", "int4") and b >= 0.25 * total]
    dominant = compressed or constants.most_common(1)
    weights = short_dtype(dominant[0][0]) if dominant else None
    compute = short_dtype(hint)
    if any(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops()):
        return mode(weights, "int8", STATIC_INT8)
    if weights in ("int8", "int4"):
        return mode(weights, compute, WEIGHT_ONLY_INT8)
    if precision == "fp32" or compute == weights:
        return mode(weights, compute, NATIVE)
    return mode(weights, compute, HINT)


def row_label(row: dict) -> str:
    """What a row's precision column shows: its mode's label, or the precision asked for in rows without one, and
    the CPU tier when it is not native: `bf16 autocast (emulated)`, `bf16 kept fp32`."""
    recorded = row.get("precision_mode")
    label = str((recorded.get("label") if isinstance(recorded, dict) else None) or row.get("precision"))
    support = row.get("cpu_support")
    tier = support.get("tier") if isinstance(support, dict) else None
    if tier == "kept fp32":
        return f"{row.get('precision')} kept fp32"
    if tier == "emulated":
        return f"{label} (emulated)"
    return label
