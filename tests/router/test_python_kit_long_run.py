"""bench/long_run.py, short: a backend POSTs a notification every 0.5 s to a Python kit client (a
program of its own, subscribed with recover=True) whose connection is cut twice while the router
stays up (a TCP relay stopped for 4 s), and the router restarts once. With the Redis store every
event arrives exactly once and in order; with the memory store every loss is announced. The kit's
backoff is capped at 1.5 s, as in the other restart tests: with its default 10 s cap a client whose
router was down 5 s may come back after these short runs end (the joins counted)."""

from bench.long_run import run


def test_with_the_redis_store_every_event_arrives_once_and_in_order_through_cuts_and_a_restart(tmp_path):
    report = run(36, store="redis", kit="asyncio", workdir=tmp_path, max_retry_delay=1.5)
    print("\n".join(report.lines()))
    assert report.published >= 60 and report.exactly_once_in_order, report.lines()
    assert report.closed == [1, 1] and report.restart is not None  # each cut closed the joined subscriber's
    assert report.joins == 4 and report.missed > 0  # three reconnects, the missed events from the history
    assert report.losses_announced == 0, report.recoveries


def test_with_the_memory_store_every_loss_of_a_restart_is_announced(tmp_path):
    report = run(16, store="memory", kit="twisted", workdir=tmp_path, cuts=1, max_retry_delay=1.5)
    print("\n".join(report.lines()))
    assert report.unannounced_gaps == [], report.lines()
    assert report.received == sorted(set(report.received)), report.lines()  # never twice, never back
    assert report.losses_announced >= 1, report.recoveries  # the restart lost the stream: said so
    assert report.closed == [1] and report.joins == 3
