"""recctl's compiled kernels; everything else about the package is in pyproject.toml.

setuptools documents extension modules as ``setup(ext_modules=[Extension(...)])`` in a setup.py
beside pyproject.toml (https://setuptools.pypa.io/en/latest/userguide/ext_modules.html); its
``[[tool.setuptools.ext-modules]]`` table is still *experimental* and warned so on every install.

``recctl._kernels`` (recctl/_kernels.c): the top-K selection (docs/architecture.md, "The top-K
kernel") and item-kNN's similarity rows; plain C against the CPython API, built by
``pip install -e .`` / ``make install`` with the C compiler LightFM already needs. ``optional``:
where it does not compile the install still succeeds, and recctl.ranking / models._similarity
fall back to numpy (same results, slower; ``recctl info`` says which selection runs).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("recctl._kernels", sources=["recctl/_kernels.c"], optional=True)])
