"""crossbar-jwt: JWT authentication and per-role, per-user authorization for Crossbar.io.

The pure core (``reasons``, ``keys``, ``policy``, ``settings``, ``tokens``) imports no Twisted;
``component`` wires it to the router; ``cli`` serves ``python -m authenticator``.
"""
