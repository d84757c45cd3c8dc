"""HTTP publishing, the pure part: a request body -> publications, and outcomes -> HTTP answers.

No Twisted, no I/O. The body has the shape of Crossbar's HTTP bridge (``{"topic", "args",
"kwargs", "options"}``, or a JSON list of those: a batch), so its users feel at home, with one
difference that matters: nothing in it can change who the publisher is. The publisher is the
token's identity (authenticator/endpoints/publish.py); ``forward_for`` and every other option that
names a publisher or reaches past the policy is refused, never passed on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authenticator.contract import HISTORY_UNAVAILABLE
from authenticator.core.idempotency import KEY_FIELD, KeyProblem, checked_key
from authenticator.core.json_guard import (
    LoneSurrogate,
    NonFiniteNumber,
    finite_float,
    may_hold_surrogates,
    nesting_exceeds,
    refuse_constant,
    refuse_lone_surrogates,
)
from authenticator.core.unknown_keys import unknown_keys

DEFAULT_MAX_BODY_BYTES = 65536  # as the WebSocket's max_message_size
DEFAULT_MAX_BATCH = 100
# Deeper JSON than this is refused before anything serializes it again for the subscribers.
MAX_DEPTH = 32
MAX_LISTED = 100  # entries of one exclude/eligible list
MAX_LISTED_LENGTH = 256  # characters of one authid or authrole in such a list
MAX_NAMED_UNKNOWN = 3  # unknown keys an answer names

FIELDS = ("topic", "args", "kwargs", "options", KEY_FIELD)
# Receiver filters, by authid or authrole (Crossbar's names). Not by session id: a backend has no
# business knowing WAMP session ids, and they name sessions of any user.
FILTER_OPTIONS = ("exclude_authid", "exclude_authrole", "eligible_authid", "eligible_authrole")
OPTIONS = (*FILTER_OPTIONS, "acknowledge", "retain")
# Options that would change who the publisher is, or how it is disclosed: refused by name so that
# the answer says why, not just "unknown option".
PUBLISHER_OPTIONS = frozenset({"forward_for", "disclose_me", "exclude_me", "exclude", "eligible",
                               "publisher", "publisher_authid", "publisher_authrole"})  # fmt: skip
# Crossbar's loose URI rule (router/broker.py), non-empty components, plus a length bound below.
_URI = re.compile(r"^([^\s.#]+\.)*([^\s.#]+)$")

INVALID_ARGUMENT = "wamp.error.invalid_argument"
NOT_AUTHORIZED = "wamp.error.not_authorized"
# Idempotency keys (core/idempotency.py): a request holds the key now (409, retry), the key was
# given with another publication (422), the store of keys cannot be reached (503, retry).
KEY_IN_USE = "authenticator.error.idempotency_key_in_use"
KEY_REUSED = "authenticator.error.idempotency_key_reused"
STORE_UNAVAILABLE = "authenticator.error.store_unavailable"


class BodyProblem(ValueError):
    """The request body, or one publication of a batch, cannot be published; the message says why."""


@dataclass(frozen=True)
class Publication:
    topic: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    # The receiver filters and retain, as Crossbar's PublishOptions takes them.
    options: dict = field(default_factory=dict)
    idempotency_key: str | None = None  # the body's own (a batch's publications each carry theirs)

    @property
    def retain(self) -> bool:
        return bool(self.options.get("retain"))


@dataclass(frozen=True)
class Refusal:
    """One publication that was not published: a WAMP error URI and a message for the caller."""

    error: str
    message: str

    def answer(self) -> dict:
        return {"error": self.error, "message": self.message}


NOT_JSON = "The body is not JSON: send a JSON object (or a list of them) as UTF-8."


def parse_body(body: bytes, *, max_batch: int, max_uri_length: int) -> tuple[bool, list[Publication | Refusal]]:
    """(is a batch, the publications in order). A body that is not JSON, too deep, or neither an
    object nor a list raises BodyProblem; in a batch, a bad publication is a Refusal in its place
    (a bad one does not stop the others)."""
    try:
        # UTF-8 only (RFC 8259): json.loads of bytes would also read UTF-16 and UTF-32, whose bytes
        # the nesting and surrogate scans below cannot follow. Encoded surrogates pass here (as
        # json.loads lets them) to be refused below with the message that names them.
        text = body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise BodyProblem(NOT_JSON) from None
    if nesting_exceeds(body, MAX_DEPTH):
        raise BodyProblem(f"The body is nested deeper than {MAX_DEPTH} levels.")
    try:
        # NaN, Infinity and numbers beyond the float range are refused, not read: Python would write
        # them back bare for the subscribers, and their JSON parsers fail on them (AutobahnJS in Node
        # then receives nothing more on that connection).
        document = json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
    except NonFiniteNumber as problem:
        what = (
            f"{problem.value}, which is not JSON (RFC 8259 has no NaN or Infinity)"
            if problem.value in ("NaN", "Infinity", "-Infinity")
            else f"the number {problem.value}, beyond the range of a double (it would reach subscribers as Infinity)"
        )
        raise BodyProblem(
            f"The body carries {what}; subscribers' JSON parsers fail on it. Send null, or the value as a string."
        ) from None
    except (ValueError, RecursionError):
        raise BodyProblem(NOT_JSON) from None
    if may_hold_surrogates(body):
        # The escape "\ud800" without its pair (or its bytes, which json.loads lets through): a
        # string that is not Unicode, which no subscriber's serializer can write. Anywhere in the
        # body (topic, args, kwargs, a key, any publication of a batch): refused whole.
        try:
            refuse_lone_surrogates(document)
        except LoneSurrogate as problem:
            raise BodyProblem(
                f"The body carries a lone surrogate {problem.value}, which is not valid Unicode: send valid UTF-8 "
                "(a character outside the BMP as its pair of escapes, or as UTF-8)."
            ) from None
    if isinstance(document, dict):
        return False, [publication(document, max_uri_length)]
    if not isinstance(document, list):
        raise BodyProblem('The body must be a JSON object {"topic": ..., "args": [...]} or a list of them.')
    if not document:
        raise BodyProblem("The batch is empty: send at least one publication.")
    if len(document) > max_batch:
        raise BodyProblem(f"The batch has {len(document)} publications; at most {max_batch} per request.")
    items: list[Publication | Refusal] = []
    for entry in document:
        try:
            items.append(publication(entry, max_uri_length))
        except BodyProblem as problem:
            items.append(Refusal(INVALID_ARGUMENT, str(problem)))
    return True, items


KEY_GIVEN_TWICE = (
    "The idempotency key is given twice, in the Idempotency-Key header and in 'idempotency_key': send it once."
)
HEADER_IN_BATCH = (
    "The Idempotency-Key header names the publication of a one-publication request: in a batch, give each "
    "publication its own 'idempotency_key' (or none)."
)


def idempotency_keys(batch: bool, items: list[Publication | Refusal], header: list[bytes] | None) -> list[str | None]:
    """The idempotency key of each publication (None where none is given): the Idempotency-Key
    header (`header`: its values) for a one-publication request, each publication's own
    'idempotency_key' in a body or a batch. A bad or ambiguous header raises BodyProblem (the
    request is refused whole, nothing published); a key that repeats one earlier in the same batch
    makes that later publication a Refusal in its place (it would wait for itself)."""
    given = None
    if header:
        if len(header) > 1:
            raise BodyProblem("Send one Idempotency-Key header.")
        try:
            given = checked_key(header[0].decode("latin-1").strip(" \t"), "The Idempotency-Key header")
        except KeyProblem as problem:
            raise BodyProblem(str(problem)) from None
        if batch:
            raise BodyProblem(HEADER_IN_BATCH)
    keys = [item.idempotency_key if isinstance(item, Publication) else None for item in items]
    if given is not None:
        if keys[0] is not None:
            raise BodyProblem(KEY_GIVEN_TWICE)
        keys[0] = given
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key is None:
            continue
        if key in first:
            items[index] = Refusal(INVALID_ARGUMENT, f"'idempotency_key' repeats the key of publication "
                                   f"{first[key] + 1} of this batch: a key names one publication.")  # fmt: skip
            keys[index] = None
        else:
            first[key] = index
    return keys


def publication(entry: object, max_uri_length: int) -> Publication:
    """One publication of the body, checked: types, URI, options."""
    if not isinstance(entry, dict):
        raise BodyProblem('A publication must be a JSON object {"topic": ..., "args": [...], "kwargs": {...}}.')
    unknown = _unknown("A publication", entry, FIELDS)
    if unknown:
        raise BodyProblem(unknown)
    topic = entry.get("topic")
    if not isinstance(topic, str) or not topic:
        raise BodyProblem("'topic' must be a non-empty string, such as \"app.user.bob.notifications\".")
    if len(topic) > max_uri_length:
        raise BodyProblem(f"'topic' is longer than {max_uri_length} characters.")
    if not _URI.match(topic):
        raise BodyProblem("'topic' is not a valid WAMP URI: dot-separated, non-empty parts, no spaces or '#'.")
    args = entry.get("args")
    kwargs = entry.get("kwargs")
    if args is not None and not isinstance(args, list):
        raise BodyProblem("'args' must be a JSON list.")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise BodyProblem("'kwargs' must be a JSON object.")
    key = entry.get(KEY_FIELD)
    if key is not None:
        try:
            key = checked_key(key, f"'{KEY_FIELD}'")
        except KeyProblem as problem:
            raise BodyProblem(str(problem)) from None
    return Publication(topic, args or [], kwargs or {}, _options(entry.get("options")), key)


def _options(options: object) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BodyProblem("'options' must be a JSON object.")
    forbidden = sorted(key for key in options if key in PUBLISHER_OPTIONS)
    if forbidden:
        # The publisher is the token's identity: a body naming another (forward_for) would let any
        # token holder make subscribers see any publisher, as Crossbar's own bridge does.
        raise BodyProblem(
            f"Option '{forbidden[0]}' is not accepted over HTTP: the publisher is the token's identity, and "
            "receivers are chosen by authid or authrole (exclude_authid, eligible_authid, ...)."
        )
    unknown = _unknown("'options'", options, OPTIONS)
    if unknown:
        raise BodyProblem(unknown)
    if options.get("acknowledge", True) is not True:
        raise BodyProblem("'acknowledge' is always true over HTTP: the answer is the publication's id.")
    checked: dict[str, Any] = {}
    for name in FILTER_OPTIONS:
        value = options.get(name)
        if value is None:
            continue
        if (
            not isinstance(value, list)
            or len(value) > MAX_LISTED
            or not all(isinstance(v, str) and 0 < len(v) <= MAX_LISTED_LENGTH for v in value)
        ):
            raise BodyProblem(
                f"'{name}' must be a list of at most {MAX_LISTED} strings of 1 to {MAX_LISTED_LENGTH} characters."
            )
        if not value and name.startswith("eligible"):
            # Crossbar's broker treats an empty eligible list as no filter: the event would reach
            # every subscriber, the opposite of what a backend that computed no recipients means.
            raise BodyProblem(f"'{name}' is empty: it would reach every subscriber. Leave it out, or do not publish.")
        checked[name] = list(value)
    retain = options.get("retain", False)
    if not isinstance(retain, bool):
        raise BodyProblem("'retain' must be true or false.")
    if retain:
        checked["retain"] = True
    return checked


def _unknown(where: str, given: dict, known) -> str | None:
    """The unknown keys, "did you mean" for the first few only: a body of thousands of unknown keys
    must not cost a suggestion each, nor an answer larger than the request."""
    unknown = [key for key in given if key not in known]
    if not unknown:
        return None
    more = len(unknown) - MAX_NAMED_UNKNOWN
    named = unknown_keys(where, unknown[:MAX_NAMED_UNKNOWN], known)
    return named + (f" (and {more} more unknown keys)." if more > 0 else ".")


# -- answers ------------------------------------------------------------------------------------

STATUS_OF_ERROR: Mapping[str, int] = {
    NOT_AUTHORIZED: 403, INVALID_ARGUMENT: 400, KEY_IN_USE: 409, KEY_REUSED: 422, STORE_UNAVAILABLE: 503,
    HISTORY_UNAVAILABLE: 503,
}  # fmt: skip
# Refusals a retry may cure by itself: their single answer says when (Retry-After, seconds).
RETRY_AFTER = {KEY_IN_USE: "1", STORE_UNAVAILABLE: "1", HISTORY_UNAVAILABLE: "1"}


@dataclass(frozen=True)
class Replayed:
    """A publication its idempotency key found published: the first answer, nothing published now."""

    publication_id: int


def single_answer(item: int | Replayed | Refusal) -> tuple[int, dict]:
    """The status and body of a one-publication request: its id, or its refusal's status."""
    if isinstance(item, Refusal):
        return STATUS_OF_ERROR.get(item.error, 500), item.answer()
    return 200, {"id": _id(item)}


def batch_answer(items: list[int | Replayed | Refusal]) -> tuple[int, list[dict]]:
    """A batch is answered 200 once its token was accepted: each publication its own outcome."""
    return 200, [item.answer() if isinstance(item, Refusal) else {"id": _id(item)} for item in items]


def _id(item: int | Replayed) -> int:
    return item.publication_id if isinstance(item, Replayed) else item
