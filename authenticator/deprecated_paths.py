"""The module paths of release 0.1, kept for one release (CHANGELOG.md): node configs and client
code that name them keep working, and get the very same objects as the new paths.

An import finder, not a module file per old path: the package's tree shows only its layers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from authenticator.contract import DEPRECATED_PATHS

# The dotted paths that 0.1's node configs and docs name (tests/unit/test_dotted_paths.py).
OLD_TO_NEW = DEPRECATED_PATHS
OLD_MODULES = {old.rpartition(".")[0]: new.rpartition(".")[0] for old, new in OLD_TO_NEW.items()}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in OLD_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # a placeholder: exec_module puts the real module in its place

    def exec_module(self, module):
        """The old name is the module under its new path: the same object, its own spec kept
        (importlib returns what sys.modules holds after this)."""
        old = module.__spec__.name
        new = OLD_MODULES[old]
        warnings.warn(f"{old} moved to {new} (CHANGELOG.md); the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        sys.modules[old] = importlib.import_module(new)


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
