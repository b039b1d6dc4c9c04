"""The one thing pyproject.toml cannot say without a warning: the C featuriser.

``models/_hashgrams.c`` (the numpy featuriser in ``models/featurize.py`` is the reference and
the fallback) is optional: where nothing can compile it the install still works, slower.
``tests/models/test_hashgrams.py`` fails where it was not built.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("models._hashgrams", sources=["models/_hashgrams.c"],
                  extra_compile_args=["-O2"], optional=True),
    ],
)
