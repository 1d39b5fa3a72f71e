"""Shared fixtures of the models/scoring tests: the tiny Qwen2.5-VL, built once per test session."""
from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import pytest


@lru_cache(maxsize=None)
def tiny_model_dir(seed: int = 0) -> Path:
    """A tiny checkpoint built by `vttrain.models.build.init_tiny` (once per process and seed)."""
    from vttrain.models.build import init_tiny
    return init_tiny(Path(tempfile.mkdtemp(prefix="vt-tiny-")) / f"tiny-{seed}", seed=seed)


@lru_cache(maxsize=None)
def tiny_model():
    """(model, processor) of the tiny checkpoint, loaded once per process (treat as read-only)."""
    from vttrain.models.build import load
    return load(tiny_model_dir(), device="cpu")


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return tiny_model_dir()
