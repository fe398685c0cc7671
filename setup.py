"""Build the optional Cython scheduler core.

Every ``ext/*.pyx`` becomes ``runtime._<name>_c``.  The build is optional: without Cython or a
C compiler the install is pure Python and says so.  ``WARMSTART_REQUIRE_EXTENSIONS=1`` turns a
failed build into an error (CI sets it); ``WARMSTART_NO_EXTENSIONS=1`` skips the build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
REQUIRE = os.environ.get("WARMSTART_REQUIRE_EXTENSIONS") == "1"
SKIP = os.environ.get("WARMSTART_NO_EXTENSIONS") == "1" and not REQUIRE


def extension_modules() -> list[Extension]:
    """One extension per .pyx in ext/, named runtime._<stem>_c."""
    return [
        Extension(f"runtime._{pyx.stem}_c", [str(pyx.relative_to(HERE))])
        for pyx in sorted((HERE / "ext").glob("*.pyx"))
    ]


def banner(text: str) -> None:
    line = "*" * 72
    print(f"\n{line}\n{text}\n{line}\n", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python unless the extensions are required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._failed(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        if REQUIRE:
            raise
        banner(f"warmstart: the Cython core did not build ({exc}); installing pure Python.")


def cythonized() -> list[Extension]:
    if SKIP:
        banner("warmstart: WARMSTART_NO_EXTENSIONS=1, installing pure Python.")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE:
            raise
        banner("warmstart: Cython is not installed; installing pure Python.")
        return []
    return cythonize(
        extension_modules(),
        language_level="3",
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )


setup(ext_modules=cythonized(), cmdclass={"build_ext": OptionalBuildExt})
