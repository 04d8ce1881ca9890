"""A module that exists but imports a missing dependency: the error must name the dependency."""

import some_missing_dependency_xyz  # noqa: F401

app = None
