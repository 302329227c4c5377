"""A plug-in module that does not import: a dependency is missing."""

import effray_no_such_dependency  # noqa: F401
