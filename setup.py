"""The compiled builds (pyproject.toml holds everything else).

Each is optional: where no C compiler is found, the install still works and the
same code runs interpreted. The Cython modules are ordinary .py files, compiled
from the same source (`flows/build.py` says which).
"""

import importlib.util
from pathlib import Path

from setuptools import Extension, setup

_spec = importlib.util.spec_from_file_location("build", Path("flows") / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

# Calls into libpython through the GOT, not a PLT stub: ~1.5% of a replay. No
# fused multiply-adds (GCC's default on aarch64): the compiled build rounds each
# operation as the interpreted one does, so both give the same numbers.
FLAGS = ["-fno-plt", "-ffp-contract=off"]
extensions = [
    Extension(name, [name.replace(".", "/") + ".c"], optional=True, extra_compile_args=FLAGS)
    for name in build.C_MODULES
]
try:
    from Cython.Build import cythonize
except ImportError:  # an install without Cython: those modules run interpreted
    pass
else:
    root = Path("flows")
    extensions += cythonize(
        [
            Extension(
                build.module_name(path, root), [str(path)], optional=True, extra_compile_args=FLAGS
            )
            for path in build.cython_sources(root)
        ],
        compiler_directives={"language_level": 3},
        quiet=True,
        force=True,  # its dependency scan misses pure-mode cimports of changed .pxd files
    )

setup(ext_modules=extensions)
