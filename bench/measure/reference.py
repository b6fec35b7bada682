"""The eager fp32 reference on disk: its outputs, the attention mask, and a digest of the inputs it was computed on.

A reference is written once in `main` and read by workers of every environment. The inputs are made from a seed in
each worker, and NumPy's random stream is not promised to stay the same across NumPy versions, so a worker checks
its own inputs against the reference's digest before comparing anything.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

MASK, DIGEST, NUMPY = "__attention_mask__", "__inputs_digest__", "__numpy__"


@dataclass
class Reference:
    outputs: dict[str, np.ndarray]
    mask: np.ndarray
    inputs_digest: str | None
    numpy_version: str | None


class InputsMismatch(RuntimeError):
    """This worker's inputs are not the ones the reference was computed on."""


def save_reference(path, outputs: dict, inputs: dict) -> None:
    """Write atomically: a reader in any environment sees a whole file or none."""
    from bench.measure.inputs import inputs_digest

    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".npz.partial")
    arrays = {name: as_stored(value) for name, value in outputs.items()}
    meta = {DIGEST: np.array(inputs_digest(inputs)), NUMPY: np.array(np.__version__)}
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **{MASK: inputs["attention_mask"]}, **meta, **arrays)
    os.replace(tmp, path)


def as_stored(value) -> np.ndarray:
    """Outputs as float32; integer arrays (a generation reference's token ids) as int64, exactly."""
    value = np.asarray(value)
    return value.astype(np.int64) if np.issubdtype(value.dtype, np.integer) else value.astype(np.float32)


def load_reference(path) -> Reference:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    mask = arrays.pop(MASK)
    digest, version = arrays.pop(DIGEST, None), arrays.pop(NUMPY, None)
    return Reference(arrays, mask, None if digest is None else str(digest), None if version is None else str(version))


def check_inputs(reference: Reference, inputs: dict, path) -> None:
    """Raise InputsMismatch, naming both digests, unless these inputs are the reference's."""
    from bench.measure.inputs import inputs_digest

    mine = inputs_digest(inputs)
    if reference.inputs_digest == mine:
        return
    if reference.inputs_digest is None:
        raise InputsMismatch(f"the reference {path} records no inputs digest (inputs here: {mine}); remove it to rebuild")
    raise InputsMismatch(
        f"the inputs made here (token ids and mask, digest {mine}, NumPy {np.__version__}) are not those of the"
        f" reference (digest {reference.inputs_digest}, NumPy {reference.numpy_version}) {path}"
    )
