"""The backend registry: what each backend declares, what the parent may import, and the checklist that adds one."""

import re
import subprocess
import sys

import pytest

from bench.backends import BACKENDS, backend_class, recorded_packages
from bench.backends.base import Backend, BackendInfo
from bench.backends.torch.common import TorchBackend
from bench.machine import PACKAGES
from conftest import PROJECT


def test_every_backend_declares_what_the_parent_needs_in_its_own_class():
    for name, info in BACKENDS.items():
        backend = backend_class(name)
        assert issubclass(backend, Backend) and backend.name == name and info.module == backend.__module__
        assert info.precisions and set(info.precisions) <= {"fp32", "bf16", "int8"}
        assert info.thread_family in ("torch", "onnxruntime", "openvino") and info.requires and info.records
        assert info.options.model_validate({}).model_dump() == info.options().model_dump()
    assert {info.environment for info in BACKENDS.values()} == {"main", "intel"}


def test_a_declaration_names_only_what_a_backend_declares_and_misses_nothing():
    with pytest.raises(TypeError, match=r"declares \['precision'\]"):
        type("Wrong", (TorchBackend,), {}, name="wrong", precision=("fp32",))
    unfinished = type("Unfinished", (TorchBackend,), {}, name="unfinished")
    with pytest.raises(TypeError, match=r"Unfinished does not declare \['options_model', 'precisions'\]"):
        BackendInfo.of(unfinished)


def test_rows_record_the_versions_of_every_backends_packages_and_benchs_own():
    assert set(PACKAGES) == set(recorded_packages()) | {"numpy", "pydantic"}
    assert {"torch", "transformers", "onnxruntime", "openvino", "nncf", "intel-extension-for-pytorch"} <= set(PACKAGES)


def test_the_registry_imports_no_numerical_library_in_the_parent():
    code = (
        "import sys, bench.backends, bench.machine\n"
        "heavy = ('numpy', 'torch', 'transformers', 'onnxruntime', 'openvino', 'optimum', 'nncf')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_checklist_for_a_new_backend_names_files_that_exist():
    text = (PROJECT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:bench|tests|docs)/[\w/.-]+\.(?:py|md))`", text))
    assert "bench/backends/__init__.py" in named and "bench/backends/base.py" in named
    assert [path for path in sorted(named) if "<" not in path and not (PROJECT / path).exists()] == []
