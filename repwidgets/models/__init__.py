"""The default model, its trainer and the cache of trained checkpoints.

- :class:`SmallCNN`: four conv blocks with readable names (``features.conv1..conv4``,
  ``pool``, ``fc``), input normalisation inside;
- :func:`train_model` -> :class:`TrainHistory`; :func:`evaluate` (accuracy per group);
- :func:`demo_model`, :func:`load_or_train`, :func:`ensemble`: trained once, then cached;
- :func:`load_weights`: a checkpoint saved elsewhere loaded into a model (weights only).
"""

from .checkpoint import CheckpointError, load_weights
from .cnn import SmallCNN
from .train import TrainHistory, evaluate, predict, train_model
from .zoo import (
    DEMO_MODEL,
    DEMO_TRAIN,
    checkpoint_path,
    demo_model,
    demo_model_history,
    ensemble,
    load_or_train,
)

__all__ = [
    "CheckpointError",
    "DEMO_MODEL",
    "DEMO_TRAIN",
    "SmallCNN",
    "TrainHistory",
    "checkpoint_path",
    "demo_model",
    "demo_model_history",
    "ensemble",
    "evaluate",
    "load_or_train",
    "load_weights",
    "predict",
    "train_model",
]
