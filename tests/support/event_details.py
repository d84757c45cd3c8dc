"""The details of the EVENTs this test process receives, as they came on the wire (Autobahn's
EventDetails drops the ones it does not know, e.g. the router's x_position). Test support only:
it wraps Autobahn's Event.parse in this process, independently of the product's own patch."""

from autobahn.wamp import message

_received: dict[int, dict] = {}


def record_event_details() -> None:
    if getattr(message.Event, "_test_records_details", False):
        return
    original = message.Event.parse

    def parse(wmsg):
        event = original(wmsg)
        _received[event.publication] = dict(wmsg[3])
        return event

    message.Event.parse = staticmethod(parse)
    message.Event._test_records_details = True


def details_of(publication: int) -> dict:
    return _received[publication]
