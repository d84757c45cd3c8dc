"""The Python client kits: one reconnect/backoff/refresh loop on txaio (loop), shells for Twisted
(twisted) and asyncio (asyncio). Import only Autobahn, txaio and authenticator.contract: pip
install crossbar-jwt installs them without the router.
"""
