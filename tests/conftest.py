"""Shared fixtures: the example user model and a temporary results file."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MODEL = str(ROOT / "examples" / "linear_regression.py")


@pytest.fixture
def example_model_path() -> str:
    return EXAMPLE_MODEL


@pytest.fixture
def results_file(tmp_path) -> Path:
    return tmp_path / "results.h5"
