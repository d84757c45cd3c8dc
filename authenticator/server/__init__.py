"""The router-side component and what it runs: login (admission), authorization (authorizer), the
live-session keeper (expiry, revocation), refresh and revoke (procedures), the token store, JWKS
refresh, start-up checks.
"""
