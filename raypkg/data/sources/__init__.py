"""Importing this package registers every dataset builder."""

from raypkg.data.sources import digits  # noqa: F401
