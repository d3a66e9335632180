"""Training: one Trainer for every gradient-trained model, plus the pairwise batch step."""

from liverec.train.trainer import TrainConfig, Trainer, TrainResult, resolve_device

__all__ = ["TrainConfig", "TrainResult", "Trainer", "resolve_device"]
