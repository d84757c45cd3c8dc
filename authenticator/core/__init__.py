"""The pure core: token verification (token -> Identity or a typed rejection), policy (Identity +
action + URI -> Decision), keys, carriers, peer addresses, the JSON guard and log-safe text. No
Twisted, Autobahn, Crossbar or sockets (tests/unit/test_layers.py).
"""
