"""liverec: train, evaluate, serve and continuously update recommenders."""

__version__ = "0.1.0"
