"""Build of the optional C module ``python_worker._speedups`` (the rest is in pyproject.toml).

The module is optional: where it cannot be compiled (no C compiler, no Python headers), the
package installs without it and the worker decodes every frame in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("python_worker._speedups", ["python_worker/_speedups.c"], optional=True)])
