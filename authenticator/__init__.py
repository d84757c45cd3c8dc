"""crossbar-jwt: JWT authentication and per-role, per-user authorization for Crossbar.io.

The layers (docs/architecture.md), each a subpackage; tests/unit/test_layers.py enforces who may
import whom:

- ``core``: pure: reasons, token verification, keys, policy, carriers, peer addresses, log text;
- ``config``: reads, checks and derives ``.crossbar`` node configs and the component's settings;
- ``patches``: every change to Crossbar, Autobahn and Twisted internals, with its inventory and guard;
- ``server``: the router-side component (login, authorization, expiry, revocation, refresh);
- ``endpoints``: HTTP resources the router serves (``POST /publish``);
- ``ops``: ``python -m authenticator`` and the one-shot WAMP caller;
- ``demo``: the demo token issuer;
- ``kit``: the Python client kits (Autobahn and txaio only);
- ``contract``: the wire names other programs rely on.
"""

from authenticator import deprecated_paths as _deprecated_paths

_deprecated_paths.install()
