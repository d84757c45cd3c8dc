"""Patch 'proxy-node-key': a proxy worker reads the node key once, not twice per client session.

Crossbar 26.10's proxy opens a backend connection per client session and, for each, calls
``crossbar.common.key._read_node_key`` twice (``make_backend_connection`` and
``ProxyFrontendSession`` on connect): each call parses the key file again and renders the key as a
QR code with pyqrcode (~9 ms each, measured), which nothing on that path uses. That cost made the
scale-out node ~10 x slower per core than one router worker (issue 23; docs/scaling.md has the
upstream report). The proxy module's name is replaced by a reader that parses each key file once
per process and renders no QR code. A node key changes only with a restart of the node."""

from __future__ import annotations

import os


def install() -> None:
    from crossbar.common.key import _parse_node_key
    from crossbar.worker import proxy

    if getattr(proxy, "_crossbar_jwt_node_key", False):
        return
    read_once: dict[str, dict] = {}

    def read_node_key(cbdir, privkey_path="key.priv", pubkey_path="key.pub", private=False):
        path = os.path.join(cbdir, privkey_path if private else pubkey_path)
        key = read_once.get(path)
        if key is None:
            if not os.path.exists(path):
                raise Exception(f"no node key file found at {path}")  # Crossbar's own message
            tags = _parse_node_key(path)
            key = read_once[path] = {"hex": tags["private-key-ed25519" if private else "public-key-ed25519"],
                                     "qrcode": None}  # fmt: skip
        return dict(key)

    proxy._read_node_key = read_node_key
    proxy._crossbar_jwt_node_key = True
