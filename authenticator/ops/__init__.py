"""Operator tools: python -m authenticator (cli) and the one-shot WAMP caller it revokes with
(wamp_call).
"""
