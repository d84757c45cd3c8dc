"""No host detail in what a client reads over HTTP: no version in ``Server``, no pid, peer or
directory in a 404 page.

Patched (verified on Crossbar 26.10.1, Autobahn 26.10.2, Twisted 26.10.0), in the router worker
and in every proxy worker, by :func:`install` (called from ``hardening.harden_router_worker``):

- ``twisted.web.server:version``: the ``Server`` header Twisted Web writes on every HTTP answer
  (``Request.process`` reads the module global at each request). Crossbar sets it to
  ``Crossbar/<version>`` when ``crossbar.worker.transport`` is first imported, a module-level
  assignment: :func:`install` imports that module first, so the assignment has run and cannot
  run after ours. Every answer that is not a WebSocket upgrade says ``Server: crossbar-jwt``
  (``/``, a 404, a 405, ``/auth``, ``/metrics``, ``/publish``, TRACE; behind the proxies the
  router worker's answer they forward says the same).
- ``autobahn.websocket.protocol:WebSocketServerFactory.server``: the ``Server`` header of the
  101 answer to a WebSocket upgrade (and of Autobahn's own HTML pages). Crossbar passes
  ``Crossbar`` (``Crossbar/<version>`` with ``show_server_version``, the default of its
  WebSocket reverse proxy) and Autobahn's default is ``AutobahnPython/<version>``. A property on
  the class wins over the attribute ``setSessionParameters`` stores on each instance, so a
  factory built before the patch says ``crossbar-jwt`` too.
- ``crossbar.webservice.base:Resource404``: the page of every path not found under a static
  directory (and of a directory without an index, the listing being off), of Crossbar's
  ``page404`` paths and of CGI. It rendered Crossbar's template with the client's address and
  port, the worker's pid, Crossbar's version and the absolute directory served. It now answers
  Twisted's plain 404 (``twisted.web.pages.notFound``) to every method: "No Such Resource".

What else a client can trigger, checked: Twisted's 405 and 500 pages name no version (Crossbar
shows tracebacks only with the web transport option ``display_tracebacks``, which no shipped
config sets); directory listings are off on static paths (``enable_directory_listing``), and
Twisted's listing would name the URL path only; the WebSocket status page is off on every
WebSocket path (``enable_webstatus: false``).
"""

from __future__ import annotations

# What every answer says its server is: no name of a dependency, no version.
SERVER = "crossbar-jwt"


def install() -> None:
    import crossbar.worker.transport  # noqa: F401 - its `version = Crossbar/<version>` has run: never after ours
    import twisted.web.server
    from autobahn.websocket.protocol import WebSocketServerFactory
    from crossbar.webservice.base import Resource404

    twisted.web.server.version = SERVER.encode("ascii")
    if not isinstance(WebSocketServerFactory.__dict__.get("server"), _NeutralServer):
        WebSocketServerFactory.server = _NeutralServer()
    if not getattr(Resource404.render, "_crossbar_jwt_neutral", False):
        Resource404.render = _not_found  # every method: render_GET and render_HEAD are no longer reached


class _NeutralServer:
    """A data descriptor: reads give :data:`SERVER`, writes (``setSessionParameters``) are ignored."""

    def __get__(self, instance, owner=None) -> str:
        return SERVER

    def __set__(self, instance, value) -> None:
        pass


def _not_found(self, request) -> bytes:
    from twisted.web.pages import notFound

    return notFound().render(request)


_not_found._crossbar_jwt_neutral = True
