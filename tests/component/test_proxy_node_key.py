"""The proxy workers' node key (patches/proxy_node_key.py): once the proxy hardening ran, Crossbar's
proxy reads each key file once per process and renders no QR code, and answers what Crossbar's own
reader answers."""

import pyqrcode
from crossbar.common import key as crossbar_key
from crossbar.common.key import _maybe_generate_node_key
from crossbar.worker import proxy

from authenticator.patches.hardening import harden_proxy_worker


def test_a_proxy_worker_reads_the_node_key_once_without_a_qr_code(tmp_path, monkeypatch):
    _maybe_generate_node_key(str(tmp_path))
    expected = {
        private: crossbar_key._read_node_key(str(tmp_path), private=private)["hex"] for private in (True, False)
    }
    harden_proxy_worker({})  # what a proxy worker runs before its transports open
    parsed, rendered = [], []
    original_parse = crossbar_key._parse_node_key
    monkeypatch.setattr(crossbar_key, "_parse_node_key", lambda *a, **k: parsed.append(a) or original_parse(*a, **k))
    monkeypatch.setattr(pyqrcode, "create", lambda *a, **k: rendered.append(a))
    for _ in range(3):  # three client sessions, each reading both keys as Crossbar's proxy does
        assert proxy._read_node_key(str(tmp_path), private=True)["hex"] == expected[True]
        assert proxy._read_node_key(str(tmp_path), private=False)["hex"] == expected[False]
    assert len(parsed) <= 2 and rendered == []
