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

OLD_MODULES = {  # old module -> where it lives now
    "authenticator.component": "authenticator.server.component",
    "authenticator.http_publish": "authenticator.endpoints.publish",
    "authenticator.metrics": "authenticator.endpoints.metrics",
    "authenticator.issuer": "authenticator.demo.issuer",
    "authenticator.hardening": "authenticator.patches.hardening",
    "authenticator.client": "authenticator.kit.twisted",
    "authenticator.client_asyncio": "authenticator.kit.asyncio",
}

# The dotted paths that 0.1's node configs and docs name (tests/unit/test_dotted_paths.py).
OLD_TO_NEW = {
    "authenticator.component.AuthenticatorComponent": "authenticator.server.component.AuthenticatorComponent",
    "authenticator.http_publish.publish_resource": "authenticator.endpoints.publish.publish_resource",
    "authenticator.metrics.app": "authenticator.endpoints.metrics.app",
    "authenticator.issuer.app": "authenticator.demo.issuer.app",
    "authenticator.hardening.harden_proxy_worker": "authenticator.patches.hardening.harden_proxy_worker",
    "authenticator.client.Client": "authenticator.kit.twisted.Client",
    "authenticator.client_asyncio.Client": "authenticator.kit.asyncio.Client",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in OLD_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = OLD_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new} (CHANGELOG.md); the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return importlib.import_module(new)

    def exec_module(self, module):
        """Nothing to run: the module under its new path has run already."""


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
