"""Datasets (built-in, synthetic, and loaders for users' files) and keep-matrix splits."""

from miaudit.data.base import Dataset

__all__ = ["Dataset"]
