"""Grants carried in a token (capabilities): claim -> admitted Grants, or Rejected. Pure.

A token may carry, in its grants claim (``claims.caps``, default ``caps``), URIs its session may
use beyond its roles' rules: ``[{"uri": "app.doc.42", "match": "exact", "allow": ["subscribe"]}]``.
The operator decides what a token may grant: each grant must lie within a policy rule that says
``grantable`` for each of its actions, in one of the session's roles or a role they inherit
(``{authid}`` in that rule replaced by the session's authid). A grant reaching ``wamp.*`` or
``authenticator.*`` is refused whatever the policy says.

The claim is the client's text until it is admitted: it is bounded (count, URI length and
components), parsed strictly (unknown keys, duplicates of nothing, types), and a refusal names
the grant by its position and a clipped URI, never the token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from authenticator.core.logtext import clip
from authenticator.core.policy import (
    ACTIONS,
    AUTHID_PLACEHOLDER,
    MATCHES,
    Grant,
    Policy,
    PolicyError,
    _check_uri,
    covers,
    touches_reserved,
)
from authenticator.core.reasons import Reason, Rejected

# Bounds on the claim: each grant is checked against every grantable rule at every login, and a
# session keeps its grants for its life and checks them on every request they could decide.
MAX_GRANTS = 32
MAX_GRANT_COMPONENTS = 32
_GRANT_KEYS = ("uri", "match", "allow")


def read_grants(
    value: object,
    *,
    claim: str,
    policy: Policy,
    roles: Iterable[str],
    authid: str,
    max_uri_length: int,
    jti: str | None = None,
) -> tuple[Grant, ...]:
    """The grants of a token, each admitted by a grantable rule of `roles` (their closure), or a
    refusal: ``invalid_claim`` for a claim that is not a list of grants, ``grant_not_allowed`` for
    a well-formed grant no grantable rule covers (or one reaching a reserved URI)."""
    if value is None:
        return ()

    def invalid(detail: str) -> Rejected:
        return Rejected(Reason.INVALID_CLAIM, f"'{claim}' {detail}", authid=authid, jti=jti)

    if not isinstance(value, list):
        raise invalid(
            'must be a list of grants, e.g. [{"uri": "app.doc.42", "match": "exact", "allow": ["subscribe"]}]'
        )
    if len(value) > MAX_GRANTS:
        raise invalid(f"lists {len(value)} grants; at most {MAX_GRANTS}")
    grantable = policy.grantable_rules(roles)
    grants = []
    for index, entry in enumerate(value):
        uri, match, allow = _read_entry(entry, index, max_uri_length, invalid)
        concrete = uri.replace(AUTHID_PLACEHOLDER, authid)
        shown = f"grant #{index + 1} ({match} {clip(concrete, 100)!r}: {', '.join(sorted(allow))})"

        def refused(why: str, shown: str = shown) -> Rejected:
            return Rejected(Reason.GRANT_NOT_ALLOWED, f"{shown} {why}", authid=authid, jti=jti)

        if touches_reserved(concrete, match):
            raise refused("reaches wamp.* or authenticator.*, which no token may be granted")
        rule = _admitting_rule(grantable, concrete, match, allow, authid)
        if rule is None:
            within = _admitting_rule(grantable, concrete, match, None, authid)
            if within is not None:
                actions = ", ".join(sorted(within.grantable))
                raise refused(f"asks for an action the policy does not let a token grant there ({within.match} "
                              f"'{within.uri}' grants {actions})")  # fmt: skip
            spaces = sorted({f"{r.match} '{r.uri}'" for r in grantable})
            where = f"grantable here: {', '.join(spaces[:5])}" if spaces else "nothing is grantable to these roles"
            raise refused(f"is outside what the policy lets a token grant ({where})")
        grants.append(Grant(index=index, uri=concrete, match=match, allow=allow, rule=rule))
    return tuple(grants)


def _read_entry(entry: object, index: int, max_uri_length: int, invalid) -> tuple[str, str, frozenset[str]]:
    where = f"grant #{index + 1}"
    if not isinstance(entry, Mapping):
        raise invalid(f'{where} must be an object {{"uri", "match", "allow"}}')
    unknown = [k for k in entry if k not in _GRANT_KEYS]
    if unknown:
        raise invalid(f"{where} has an unknown key {clip(str(unknown[0]), 32)!r} (known: uri, match, allow)")
    uri, match, allow = entry.get("uri"), entry.get("match", "exact"), entry.get("allow")
    if not isinstance(uri, str) or not uri:
        raise invalid(f"{where} needs a non-empty 'uri'")
    if len(uri) > max_uri_length or uri.count(".") >= MAX_GRANT_COMPONENTS:
        raise invalid(f"{where}: 'uri' is longer than {max_uri_length} characters or {MAX_GRANT_COMPONENTS} components")
    if match not in MATCHES:
        raise invalid(f"{where}: 'match' must be one of {', '.join(MATCHES)}")
    try:
        _check_uri(where, uri, match)
    except PolicyError as problem:
        raise invalid(clip(str(problem), 200)) from None
    if not isinstance(allow, list) or not allow or not all(isinstance(a, str) for a in allow):
        raise invalid(f"{where}: 'allow' must list actions, e.g. [\"subscribe\"]")
    if len(allow) > len(ACTIONS) or any(a not in ACTIONS for a in allow):
        raise invalid(f"{where}: 'allow' may list {', '.join(ACTIONS)} (each once)")
    return uri, match, frozenset(allow)


def _admitting_rule(grantable, uri: str, match: str, allow: frozenset[str] | None, authid: str):
    """The first grantable rule, in policy order, whose URIs hold every URI of the grant and that
    makes every action of the grant grantable (None: any action); None if no single rule does."""
    for rule in grantable:
        if (allow is None or allow <= rule.grantable) and covers(
            rule.match, rule.uri.replace(AUTHID_PLACEHOLDER, authid), match, uri
        ):
            return rule
    return None
