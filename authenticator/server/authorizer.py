"""Crossbar's dynamic authorizer, ``authorize(session, uri, action, options)``, on the policy.

Pure of Twisted: the component registers :meth:`Authorizer.authorize` as the realm roles'
authorizer procedure. It refuses what no rule may allow (request_problem), asks the policy, spends
the per-role cache budget, logs a denial once with its reason and counts the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from authenticator.core.logtext import clip
from authenticator.core.policy import ACTIONS, Decision, Grant, request_problem
from authenticator.core.presence import events_problem, events_topic
from authenticator.core.settings import Settings
from authenticator.endpoints import metrics


class Authorizer:
    def __init__(
        self,
        settings: Settings,
        token_roles: Callable[[dict], Iterable[str]],
        log,
        own_procedures: Iterable[str],
        *,
        linked: bool = False,
        grants: Callable[[dict], Iterable[Grant]] = lambda session: (),
    ) -> None:
        self._settings = settings
        self._token_roles = token_roles  # the roles of the token a session logged in with (the keeper's table)
        # What that token granted (its caps claim), from the same table: never from the session's authextra.
        self.session_grants = grants
        self._log = log
        self._own_procedures = frozenset(own_procedures)
        # The realm has router links: what they cannot carry is refused (request_problem's `linked`).
        self._linked = linked
        # Crossbar's cache never evicts: past a role's budget its answers are given uncached
        # (correct, one call each). Per role, so visitors filling theirs with junk URIs cost the
        # other roles nothing.
        self._cache_budget = dict.fromkeys(settings.policy.roles, settings.limits.authorization_cache_entries)
        self._counters: dict[tuple[str, str, str], object] = {}

    def authorize(self, session: dict, uri, action, options) -> dict:
        decision = self.decide(
            authrole=session.get("authrole"), authid=session.get("authid"), roles=self._token_roles(session),
            action=action, uri=uri, options=options, cache_budget=True, grants=self.session_grants(session),
        )  # fmt: skip
        answer = decision.as_crossbar_answer()
        if decision.allow and action == "call" and uri in self._own_procedures:
            answer["disclose"] = True  # our procedures need to know who calls them
        return answer

    def decide(self, *, authrole, authid, roles: Iterable[str], action, uri, options, cache_budget: bool = False,
               via: str = "wamp", grants: Sequence[Grant] = ()) -> Decision:  # fmt: skip
        """The one decision of WebSocket sessions and HTTP publications: the request checks, the
        policy, the denial's log line and the count. `cache_budget`: the answer goes to Crossbar,
        which may cache it. `grants`: what the session's token granted (never cacheable)."""
        match = (options or {}).get("match", "exact")
        keeps_history = (
            action == "publish" and isinstance(uri, str) and self._settings.policy.history_for(uri) is not None
        )
        problem = request_problem(action, uri, options, self._settings.limits.max_uri_length,
                                  keeps_history=keeps_history, linked=self._linked)  # fmt: skip
        problem = problem or events_problem(action, uri, match)
        if problem is not None:
            decision = Decision(False, False, False, 0, problem)
        elif action == "subscribe" and events_topic(uri) is not None:
            # The join/leave events of topic T: whoever may ask who is on T (`presence` on T). Never
            # cacheable: Crossbar would hand the answer to every session of the role, for any match.
            decision = replace(self._settings.policy.decide(
                authrole=authrole, authid=authid, action="presence", uri=events_topic(uri), match="exact",
                session_roles=sorted(roles), grants=grants,
            ), cacheable=False)  # fmt: skip
        else:
            decision = self._settings.policy.decide(
                authrole=authrole,
                authid=authid,
                action=action,
                uri=uri,
                match=match,
                session_roles=sorted(roles),
                retain=bool((options or {}).get("retain")),
                grants=grants,
            )
        if decision.cacheable:
            decision = self._within_budget(decision, authrole) if cache_budget else replace(decision, cacheable=False)
        if not decision.allow:
            self._log.warn(
                "authorization denied: {action} {uri} authid={authid} role={role} via={via} reason={reason}",
                action=clip(action, 20), uri=clip(uri, 200), authid=authid, role=authrole, via=via,
                reason=clip(decision.reason, 500),
            )  # fmt: skip
        labels = (metrics.realm_label(self._settings), action if action in ACTIONS else "other",
                  "allow" if decision.allow else "deny", "yes" if decision.cacheable else "no")  # fmt: skip
        counter = self._counters.get(labels)
        if counter is None:  # a bounded set: 5 actions x 2 outcomes x 2
            counter = self._counters[labels] = metrics.AUTHORIZATIONS.labels(*labels)
        counter.inc()
        return decision

    def _within_budget(self, decision: Decision, role) -> Decision:
        if self._cache_budget.get(role, 0) <= 0:
            return replace(decision, cacheable=False)
        self._cache_budget[role] -= 1
        return decision
