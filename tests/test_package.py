"""The package's public surface: light import, one exception tree, samples with their licence."""

from __future__ import annotations

import json
import subprocess
import sys

import model_manager
from model_manager import errors
from model_manager.samples import SAMPLE_NAMES, load_sample, sample_path


def test_import_needs_no_optional_backend() -> None:
    code = (
        "import sys, json, model_manager; "
        "print(json.dumps([m for m in ('tensorrt', 'openvino', 'av', 'onnxruntime', 'pycuda') "
        "if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_every_public_error_is_in_the_one_tree() -> None:
    classes = [getattr(errors, n) for n in dir(errors) if n.endswith("Error")]
    assert len(classes) >= 14
    for cls in classes:
        assert issubclass(cls, errors.ModelManagerError), cls
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the drawn tree"
        assert getattr(model_manager, cls.__name__) is cls
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.UnknownModelError, LookupError)
    assert issubclass(errors.UnsupportedArchitectureError, errors.CheckpointError)


def test_samples_are_real_photos_with_a_licence() -> None:
    licence = (sample_path("astronaut").parent / "LICENSE.md").read_text()
    for name in SAMPLE_NAMES:
        img = load_sample(name)
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 150
        assert img.std() > 20  # real content, not a flat or synthetic image
        assert f"{name}.png" in licence
