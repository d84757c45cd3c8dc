"""Authorization policy: Identity + action + URI -> Decision. Pure: no Twisted, no I/O.

Rules are written in Crossbar's permission vocabulary (uri, match, allow, disclose) plus an
``{authid}`` placeholder. Decision order (docs/authorization.md repeats it; keep both in step):

1. The session's role must be defined by the policy, else DENY.
2. The role-wide rules of the session's roles and every role they inherit: the first rule that
   allows the action on every URI the request can touch decides ALLOW.
3. The per-user rules (``{authid}`` replaced by the session's authid): likewise, ALLOW.
4. The session's grants (the token's ``caps`` claim, each admitted at login by a ``grantable``
   rule of the session's roles: authenticator/core/grants.py): likewise, ALLOW, never cacheable.
5. Otherwise DENY (deny by default).

Crossbar caches an authorizer's answer under (realm, authrole, uri, action) -- without the
authid, the match type or the request's options -- hands it to every later session of that role,
and never evicts it. So an ALLOW is cacheable only when all of these hold (:meth:`Policy.decide`):

- the action is subscribe or register: a cached publish or call ALLOW would let a later request
  with other options through unchecked (``forward_for`` naming another publisher or caller,
  ``retain``);
- a role-wide rule of the authrole or a role it inherits allows it, for every match type of that
  URI: then every session of the role gets the same answer, whatever its authid, its extra token
  roles or its match type. Per-user answers, answers from extra roles, answers from a session's
  grants, and denials (another session of the role may be the user a per-user rule names, or hold
  a grant) are never cached. Grants are consulted after the rules and only add: they never change
  an answer the rules gave, so a cacheable answer holds for every session whatever it was granted;
- the component still has room in its cache budget: Crossbar's cache grows with every distinct
  URI, so the component stops marking answers cacheable after a bounded number of them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from authenticator.core.unknown_keys import unknown_keys

# Crossbar's four actions, and `presence` (asking who is subscribed to a topic, and subscribing to
# its join/leave events): Crossbar never asks about it, the authenticator's presence procedure does.
CROSSBAR_ACTIONS = ("subscribe", "publish", "call", "register")
ACTIONS = (*CROSSBAR_ACTIONS, "presence")
MATCHES = ("exact", "prefix", "wildcard")
# Actions whose answers Crossbar may cache: their options cannot change who the client is.
CACHEABLE_ACTIONS = frozenset({"subscribe", "register"})
AUTHID_PLACEHOLDER = "{authid}"
# What an authid may not contain: URI separators and pattern characters could make ``{authid}``
# address someone else's topics; whitespace and control characters only serve to deceive logs.
_UNSAFE_AUTHID = re.compile(r"[.*#\s\x00-\x1f\x7f]")
# Format (RTL overrides, zero-width), private-use, surrogate and separator characters make one
# authid look like another in logs and UIs.
_DECEPTIVE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp", "Zs"})
_URI_COMPONENT = re.compile(r"^[^\s.#]+$")
# A topic's kept history (docs/recovery.md): at most MAX_HISTORY_SIZE events, each for at most
# MAX_HISTORY_TTL_SECONDS. The bounds keep one stream's memory and one read's work finite.
MAX_HISTORY_SIZE = 10_000
MAX_HISTORY_TTL_SECONDS = 7 * 24 * 3600


class PolicyError(ValueError):
    """The policy is unusable; the message names the role and rule."""


@dataclass(frozen=True)
class History:
    """What a rule's topics keep for recovery: the newest `size` events, each for `ttl_seconds`."""

    size: int
    ttl_seconds: float


@dataclass(frozen=True)
class Rule:
    role: str
    index: int
    uri: str
    match: str
    allow: frozenset[str]
    disclose_publisher: bool = False
    disclose_caller: bool = False
    # Whether a publish under this rule may ask Crossbar to retain the event. Off unless the rule
    # says so: every retained event stays in the router's memory until replaced.
    retain: bool = False
    # Whether the topics of this rule keep their events for recovery (None: they do not). A
    # property of the topics, not of who is allowed: Policy.history_for reads it.
    history: History | None = None
    # What a token's grants (caps claim) may give within this rule's URIs, to sessions of the rule's
    # role and of every role inheriting it (authenticator/core/grants.py). Empty: nothing.
    grantable: frozenset[str] = frozenset()

    @property
    def per_user(self) -> bool:
        return AUTHID_PLACEHOLDER in self.uri

    @property
    def label(self) -> str:
        return f"role '{self.role}' rule #{self.index + 1} ({self.match} '{self.uri}')"

    def allows(self, action: str, retain: bool) -> bool:
        return action in self.allow and (not retain or self.retain)

    def discloses(self, action: str) -> bool:
        return (action == "publish" and self.disclose_publisher) or (action == "call" and self.disclose_caller)


@dataclass(frozen=True)
class Role:
    name: str
    inherit: tuple[str, ...]
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Grant:
    """One entry of a token's grants claim, admitted at login (authenticator/core/grants.py): `uri`
    with ``{authid}`` already replaced, and the grantable rule that admitted it (its disclose applies)."""

    index: int  # its position in the claim
    uri: str
    match: str
    allow: frozenset[str]
    rule: Rule

    @property
    def label(self) -> str:
        return f"grant #{self.index + 1} ({self.match} '{self.uri}': {', '.join(sorted(self.allow))})"

    def as_claim(self) -> dict:
        return {"uri": self.uri, "match": self.match, "allow": sorted(self.allow)}


@dataclass(frozen=True)
class Decision:
    allow: bool
    cacheable: bool
    disclose: bool
    step: int
    reason: str
    rule: Rule | None = None
    grant: Grant | None = None

    def as_crossbar_answer(self) -> dict:
        # 'disclose' must always be present: without it Crossbar 26.10's broker raises
        # KeyError('disclose') and silently drops the publication.
        return {"allow": self.allow, "cache": self.cacheable, "disclose": self.disclose}


@dataclass(frozen=True)
class Policy:
    roles: Mapping[str, Role]
    anonymous_role: str | None = "anonymous"
    _closure: Mapping[str, frozenset[str]] = field(default_factory=dict, repr=False)
    # (rule, topic pattern) of every rule that keeps history, in policy order
    _history: tuple[tuple[Rule, re.Pattern], ...] = field(default=(), repr=False)

    # -- roles -------------------------------------------------------------------------------

    def defines(self, role: str) -> bool:
        return role in self.roles

    def closure(self, role: str) -> frozenset[str]:
        """The role and every role it inherits, directly or not."""
        return self._closure.get(role, frozenset())

    def session_role(self, token_roles: Iterable[str]) -> tuple[str | None, tuple[str, ...]]:
        """The most privileged known role, and every known role in token order.

        A role outranks every role it inherits; between unrelated roles the one defined later
        in the policy wins. Unknown roles are ignored.
        """
        known = tuple(dict.fromkeys(r for r in token_roles if r in self.roles))
        if not known:
            return None, ()
        order = list(self.roles)
        dominant = [r for r in known if not any(r in self.closure(o) for o in known if o != r)]
        return max(dominant, key=order.index), known

    # -- decisions ---------------------------------------------------------------------------

    def decide(
        self,
        *,
        authrole: str,
        authid: str | None,
        action: str,
        uri: str,
        match: str = "exact",
        session_roles: Sequence[str] = (),
        retain: bool = False,
        grants: Sequence[Grant] = (),
    ) -> Decision:
        if action not in ACTIONS:
            return Decision(False, False, False, 1, f"unknown action '{action}'")
        if authrole not in self.roles:
            return Decision(False, False, False, 1, f"role '{authrole}' is not defined by the policy")
        authrole_roles = self.closure(authrole)
        extra_roles = frozenset().union(*(self.closure(r) for r in session_roles if r in self.roles))
        all_roles = authrole_roles | extra_roles
        rules = [rule for name in self._definition_order(all_roles) for rule in self.roles[name].rules]

        for rule in rules:
            if not rule.per_user and rule.allows(action, retain) and covers(rule.match, rule.uri, match, uri):
                cacheable = (
                    action in CACHEABLE_ACTIONS
                    and rule.role in authrole_roles
                    and all(self._role_wide_allow(authrole_roles, action, uri, m) for m in MATCHES)
                )
                return Decision(True, cacheable, rule.discloses(action), 2, f"allowed by {rule.label}", rule)

        if authid is not None and authid_problem(authid, None) is None:
            for rule in rules:
                if rule.per_user and rule.allows(action, retain):
                    concrete = rule.uri.replace(AUTHID_PLACEHOLDER, authid)
                    if covers(rule.match, concrete, match, uri):
                        return Decision(
                            True,
                            False,
                            rule.discloses(action),
                            3,
                            f"allowed for '{authid}' by {rule.label}",
                            rule,
                        )

        if not retain:
            # A session's own grants: they differ between sessions of the role, so never cacheable.
            # Never with retain: a retained event outlives the session its grant belonged to.
            for grant in grants:
                if action in grant.allow and covers(grant.match, grant.uri, match, uri):
                    return Decision(True, False, grant.rule.discloses(action), 4,
                                    f"allowed by the session's {grant.label}", grant.rule, grant)  # fmt: skip

        what = f"{action} with retain" if retain else action
        granted = " or grant of the session" if grants else ""
        return Decision(
            False, False, False, 5, f"no rule of role '{authrole}'{granted} allows {what} on {match} '{uri}'"
        )

    def history_for(self, topic: str) -> tuple[Rule, History] | None:
        """The history a topic keeps: the first rule, in policy order, whose URIs include the topic
        (``{authid}`` standing for any one component) and that says ``history``; or None."""
        for rule, pattern in self._history:
            if pattern.fullmatch(topic) if rule.match != "prefix" else pattern.match(topic):
                return rule, rule.history
        return None

    def history_rules(self) -> tuple[Rule, ...]:
        """Every rule that keeps history, in policy order."""
        return tuple(rule for rule, _ in self._history)

    def may_grant_presence(self, topic: str) -> bool:
        """Whether some rule of some role could grant `presence` on this exact topic (``{authid}``
        standing for any one component), by itself or through a token's grant: the router tracks
        who is subscribed to such topics only."""
        for role in self.roles.values():
            for rule in role.rules:
                if "presence" in rule.allow or "presence" in rule.grantable:
                    pattern = topic_pattern(rule.uri, rule.match)
                    if pattern.match(topic) if rule.match == "prefix" else pattern.fullmatch(topic):
                        return True
        return False

    def grantable_rules(self, roles: Iterable[str]) -> list[Rule]:
        """The rules with `grantable` of these roles and every role they inherit, in policy order."""
        names = frozenset().union(*(self.closure(r) for r in roles if r in self.roles))
        return [rule for name in self._definition_order(names) for rule in self.roles[name].rules if rule.grantable]

    def _role_wide_allow(self, roles: frozenset[str], action: str, uri: str, match: str) -> bool:
        return any(
            not rule.per_user and rule.allows(action, False) and covers(rule.match, rule.uri, match, uri)
            for name in roles
            for rule in self.roles[name].rules
        )

    def _definition_order(self, names: frozenset[str]) -> list[str]:
        return [name for name in self.roles if name in names]


# -- URI sets ------------------------------------------------------------------------------------


def covers(rule_match: str, rule_uri: str, request_match: str, request_uri: str) -> bool:
    """Whether every URI the request can touch is one the rule grants.

    A pattern subscription is only as allowed as the widest topic it can receive: a user may
    not prefix-subscribe ``app.user.`` because that would include other users' topics.
    """
    if rule_match == "exact":
        return request_match == "exact" and request_uri == rule_uri
    if rule_match == "prefix":
        if request_match in ("exact", "prefix"):
            return request_uri.startswith(rule_uri)
        # every URI a wildcard matches starts with its text up to the first empty component
        return _wildcard_fixed_head(request_uri).startswith(rule_uri)
    if rule_match == "wildcard":
        if request_match == "prefix":
            return False  # a prefix reaches URIs of any length; a wildcard has a fixed length
        rule_parts, request_parts = rule_uri.split("."), request_uri.split(".")
        if len(rule_parts) != len(request_parts):
            return False
        if request_match == "exact":
            return all(r == "" or r == q for r, q in zip(rule_parts, request_parts, strict=True))
        return all(r == "" or (q != "" and r == q) for r, q in zip(rule_parts, request_parts, strict=True))
    return False


_FILTER_OPTIONS = ("eligible", "eligible_authid", "eligible_authrole", "exclude", "exclude_authid", "exclude_authrole")


# The PUBLISH options that neither request_problem nor Policy.decide reads. A publication carrying
# no other option gets the decision the same session got for the same topic before, so a session
# may reuse it (authenticator/patches/publish_decisions.py). Every other key -- forward_for, retain,
# eligible/exclude, payload encryption, and whatever a later Crossbar adds -- is decided afresh.
DECISION_FREE_PUBLISH_OPTIONS = frozenset({"acknowledge", "exclude_me"})


def publish_decision_reusable(options: Mapping | None) -> bool:
    """Whether a publication with `options` is decided as one without any (see above)."""
    return not options or all(key in DECISION_FREE_PUBLISH_OPTIONS for key in options)


# A filtered publication on a realm with router links: a link relays an event without its
# eligible/exclude options (Crossbar 26.10, worker/rlink.py), so on the other nodes it would reach
# those it was filtered from and miss those it was meant for.
LINKED_FILTER_REASON = (
    "eligible and exclude options are not carried across router links; publish to a per-user topic instead"
)


def request_problem(action: str, uri: object, options: Mapping | None, max_uri_length: int, *,
                    keeps_history: bool = False, linked: bool = False) -> str | None:  # fmt: skip
    """Why a request is refused before any rule is consulted, or None. Checked for every action.
    `keeps_history`: the URI is a topic that keeps history (Policy.history_for). `linked`: the realm
    has router links (several nodes)."""
    if not isinstance(uri, str) or len(uri) > max_uri_length:
        # Crossbar keeps every distinct URI it was asked about (subscriptions, its authorization
        # cache) and logs it: a long one costs memory and log volume out of proportion.
        return f"the URI is longer than {max_uri_length} characters"
    options = options or {}
    if options.get("forward_for") is not None:
        # Crossbar takes the first forward_for entry as the publisher (or caller) it discloses:
        # from a client session that would be any identity it cares to name. Only router links
        # (static roles, not this authorizer) may forward.
        return "forward_for is reserved for router links; a client cannot act for another session"
    filtered = action == "publish" and any(options.get(key) for key in _FILTER_OPTIONS)
    if filtered and options.get("retain"):
        # With eligible/exclude Crossbar appends retained events instead of replacing them.
        return "retain cannot be combined with eligible or exclude options"
    if filtered and linked:
        return LINKED_FILTER_REASON
    if filtered and keeps_history:
        # The history is read by every subscriber of the topic (it would hand the event to those it
        # was filtered from), and the others would see a hole in the offsets.
        return (
            "eligible and exclude options cannot be used on a topic that keeps history (every subscriber "
            "reads its history); publish to a per-user topic instead"
        )
    return None


def topic_pattern(rule_uri: str, rule_match: str) -> re.Pattern:
    """The topics a rule names, as a regular expression: ``{authid}`` and a wildcard's empty
    components stand for any one component. Matched whole (exact, wildcard) or at the start
    (prefix)."""
    parts = []
    for part in rule_uri.split("."):
        if part == AUTHID_PLACEHOLDER or (part == "" and rule_match == "wildcard"):
            parts.append(r"[^.]+")
        else:
            parts.append(re.escape(part))
    return re.compile(r"\.".join(parts))


def observed_topics(rule: Rule) -> tuple[str, str]:
    """(uri, match) in Crossbar's vocabulary covering every topic of `rule` (maybe more): what
    the router watches for publications to keep. ``{authid}`` becomes a wildcard component; a
    prefix rule with ``{authid}`` is watched from its fixed head (the rest is checked per topic)."""
    if not rule.per_user:
        return rule.uri, rule.match
    if rule.match in ("exact", "wildcard"):
        return rule.uri.replace(AUTHID_PLACEHOLDER, ""), "wildcard"
    head = rule.uri.split(AUTHID_PLACEHOLDER, 1)[0]
    return head, "prefix"


def _wildcard_fixed_head(uri: str) -> str:
    parts = uri.split(".")
    if "" not in parts:
        return uri
    return ".".join(parts[: parts.index("")]) + "." if parts.index("") else ""


def authid_problem(authid: object, max_length: int | None) -> str | None:
    """Why this authid cannot be used (so that ``{authid}`` can never widen a rule), or None."""
    if not isinstance(authid, str):
        return "the authid claim must be a string"
    if authid == "":
        return "the authid claim is empty"
    if max_length is not None and len(authid) > max_length:
        return f"the authid is longer than {max_length} characters"
    if _UNSAFE_AUTHID.search(authid):
        if "@" in authid and "." in authid:
            # URIs are dot-separated, so an e-mail address cannot be a URI component.
            return (
                "the authid looks like an e-mail address, and '.' separates URI components; put a user id "
                "without '.' in the token (e.g. a 'uid' claim) and point 'claims.authid' at it"
            )
        return "the authid contains '.', '*', '#', whitespace or control characters"
    if any(unicodedata.category(ch) in _DECEPTIVE_CATEGORIES for ch in authid):
        return "the authid contains invisible or direction-changing characters (e.g. a right-to-left override)"
    return None


# -- loading -------------------------------------------------------------------------------------


def load_policy(spec: object, *, anonymous_role: str | None = "anonymous") -> Policy:
    """Build and validate a policy from its JSON form: ``{"roles": [{"name", "inherit", "rules"}]}``."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("roles"), list) or not spec["roles"]:
        raise PolicyError("the policy needs a non-empty 'roles' list")
    roles: dict[str, Role] = {}
    for position, role_spec in enumerate(spec["roles"]):
        role = _load_role(role_spec, position)
        if role.name in roles:
            raise PolicyError(f"role '{role.name}' is defined twice")
        roles[role.name] = role
    for role in roles.values():
        for parent in role.inherit:
            if parent not in roles:
                raise PolicyError(f"role '{role.name}' inherits '{parent}', which the policy does not define")
    closure = {name: _closure_of(name, roles) for name in roles}
    if anonymous_role is not None and anonymous_role not in roles:
        raise PolicyError(f"the anonymous role '{anonymous_role}' is not defined by the policy")
    history = tuple(
        (rule, topic_pattern(rule.uri, rule.match))
        for role in roles.values()
        for rule in role.rules
        if rule.history is not None
    )
    return Policy(roles=roles, anonymous_role=anonymous_role, _closure=closure, _history=history)


def _closure_of(name: str, roles: Mapping[str, Role]) -> frozenset[str]:
    seen: list[str] = []
    stack = [(name, (name,))]
    while stack:
        current, path = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        for parent in roles[current].inherit:
            if parent in path:
                raise PolicyError(f"roles inherit in a cycle: {' -> '.join((*path, parent))}")
            stack.append((parent, (*path, parent)))
    return frozenset(seen)


def _load_role(spec: object, position: int) -> Role:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise PolicyError(f"role #{position + 1} needs a 'name'")
    name = spec["name"]
    _refuse_unknown(f"role '{name[:64]}'", spec, ("name", "inherit", "rules"))
    inherit = spec.get("inherit", [])
    if isinstance(inherit, str):
        inherit = [inherit]
    if not isinstance(inherit, list) or not all(isinstance(p, str) for p in inherit):
        raise PolicyError(f"role '{name}': 'inherit' must be a role name or a list of them")
    rule_specs = spec.get("rules", [])
    if not isinstance(rule_specs, list):
        raise PolicyError(f"role '{name}': 'rules' must be a list")
    rules = tuple(_load_rule(name, i, r) for i, r in enumerate(rule_specs))
    return Role(name=name, inherit=tuple(inherit), rules=rules)


def _refuse_unknown(where: str, spec: Mapping, known) -> None:
    problem = unknown_keys(where, spec, known)
    if problem:
        raise PolicyError(problem)


def _load_rule(role: str, index: int, spec: object) -> Rule:
    where = f"role '{role}' rule #{index + 1}"
    if not isinstance(spec, Mapping):
        raise PolicyError(f"{where} must be an object with 'uri', 'match' and 'allow'")
    if "cache" in spec:
        raise PolicyError(f"{where}: remove 'cache'; the authorizer decides what Crossbar may cache")
    _refuse_unknown(where, spec, ("uri", "match", "allow", "disclose", "retain", "history", "grantable"))
    uri, match = spec.get("uri"), spec.get("match", "exact")
    if not isinstance(uri, str) or not uri:
        raise PolicyError(f"{where} needs a non-empty 'uri'")
    if match not in MATCHES:
        raise PolicyError(f"{where}: 'match' must be one of {', '.join(MATCHES)}, not {match!r}")
    _check_uri(where, uri, match)
    allow = spec.get("allow", {})
    if not isinstance(allow, Mapping):
        raise PolicyError(f"{where}: 'allow' maps {', '.join(ACTIONS)} to true/false")
    _refuse_unknown(f"{where}: 'allow'", allow, ACTIONS)
    if not all(isinstance(v, bool) for v in allow.values()):
        raise PolicyError(f"{where}: the values in 'allow' must be true or false")
    disclose = spec.get("disclose", {})
    if not isinstance(disclose, Mapping) or set(disclose) - {"publisher", "caller"}:
        raise PolicyError(f"{where}: 'disclose' maps publisher/caller to true/false")
    retain = spec.get("retain", False)
    if not isinstance(retain, bool):
        raise PolicyError(f"{where}: 'retain' must be true or false")
    if retain and (match != "exact" or not allow.get("publish")):
        # One retained event per exact URI keeps the router's memory bounded by the policy (per
        # user for an {authid} rule); a prefix or wildcard rule would let a client pin an event
        # on every URI it can invent.
        raise PolicyError(f"{where}: 'retain' needs an exact rule that allows publish")
    grantable = _load_grantable(where, uri, match, spec.get("grantable", []))
    history = _load_history(where, spec.get("history"), allow, grantable)
    return Rule(
        role=role,
        index=index,
        uri=uri,
        match=match,
        allow=frozenset(a for a, v in allow.items() if v),
        disclose_publisher=bool(disclose.get("publisher", False)),
        disclose_caller=bool(disclose.get("caller", False)),
        retain=retain,
        history=history,
        grantable=grantable,
    )


# What no token's grant may ever reach: the router's meta API and this authenticator's procedures
# (refresh, revoke, history, presence) and presence feeds. A grant there could make a user an
# admin of sessions; the operator cannot mark them grantable either.
RESERVED_PREFIXES = ("wamp.", "authenticator.")


def touches_reserved(uri: str, match: str) -> bool:
    """Whether some URI of (uri, match) -- ``{authid}`` standing for any component -- is under a
    reserved prefix (RESERVED_PREFIXES)."""
    if uri.split(".")[0] == AUTHID_PLACEHOLDER:
        return True  # the user "wamp" would make it "wamp...."
    if match == "exact":
        return uri.startswith(RESERVED_PREFIXES)
    if match == "prefix":
        # "wam" reaches "wamp.session.kill" as well as "wamp." does
        return any(uri.startswith(p) or p.startswith(uri) for p in RESERVED_PREFIXES)
    parts = uri.split(".")
    # A wildcard has a fixed length: one of a single component cannot reach "wamp.x".
    return len(parts) > 1 and parts[0] in ("", *(p.rstrip(".") for p in RESERVED_PREFIXES))


def _load_grantable(where: str, uri: str, match: str, spec: object) -> frozenset[str]:
    if not isinstance(spec, list) or not all(isinstance(a, str) for a in spec):
        raise PolicyError(f"{where}: 'grantable' lists actions a token may grant here, e.g. [\"subscribe\"]")
    unknown = [a for a in spec if a not in ACTIONS]
    if unknown:
        raise PolicyError(f"{where}: 'grantable' may list {', '.join(ACTIONS)}, not {unknown[0][:32]!r}")
    if spec and touches_reserved(uri, match):
        raise PolicyError(
            f"{where}: '{uri}' ({match}) reaches {' or '.join(p + '*' for p in RESERVED_PREFIXES)}, which no token "
            "may be granted; make it grantable under your application's URIs only"
        )
    return frozenset(spec)


def _load_history(where: str, spec: object, allow: Mapping, grantable: frozenset[str]) -> History | None:
    if spec is None:
        return None
    example = '"history": {"size": 100, "ttl_seconds": 600}'
    if not isinstance(spec, Mapping):
        raise PolicyError(f"{where}: 'history' is an object, e.g. {example}")
    _refuse_unknown(f"{where}: 'history'", spec, ("size", "ttl_seconds"))
    size, ttl = spec.get("size"), spec.get("ttl_seconds")
    if type(size) is not int or not 1 <= size <= MAX_HISTORY_SIZE:
        raise PolicyError(
            f"{where}: 'history.size' must be a whole number from 1 to {MAX_HISTORY_SIZE}, e.g. {example}"
        )
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 1 <= ttl <= MAX_HISTORY_TTL_SECONDS:
        raise PolicyError(
            f"{where}: 'history.ttl_seconds' must be from 1 to {MAX_HISTORY_TTL_SECONDS} (7 days), e.g. {example}"
        )
    if not allow.get("subscribe") and "subscribe" not in grantable:
        # Readers of a history are the topic's subscribers: the rule names the topics they may read.
        raise PolicyError(
            f"{where}: 'history' needs a rule that allows subscribe, or makes it grantable (readers are its "
            "subscribers)"
        )
    return History(size=size, ttl_seconds=float(ttl))


def _check_uri(where: str, uri: str, match: str) -> None:
    parts = uri.split(".")
    for i, part in enumerate(parts):
        if AUTHID_PLACEHOLDER in part and part != AUTHID_PLACEHOLDER:
            raise PolicyError(f"{where}: '{{authid}}' must be a whole URI component, as in 'app.user.{{authid}}.x'")
        last = i == len(parts) - 1
        empty_ok = (match == "prefix" and last) or match == "wildcard"
        if part == "" and not empty_ok:
            raise PolicyError(f"{where}: '{uri}' has an empty component")
        if part and part != AUTHID_PLACEHOLDER and not _URI_COMPONENT.match(part):
            raise PolicyError(f"{where}: '{uri}' has an invalid component '{part}'")
    if match == "prefix" and parts[-1] == AUTHID_PLACEHOLDER:
        # 'app.user.{authid}' as a prefix would give alice every topic of 'alice2' too.
        raise PolicyError(f"{where}: a prefix must not end in '{{authid}}'; end it with '{{authid}}.'")
