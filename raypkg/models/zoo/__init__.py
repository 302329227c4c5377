"""Importing this package registers every model builder."""

from raypkg.models.zoo import mlp  # noqa: F401
