"""The leader's outbox and the reading of the publish script's answer: plain calls."""

from __future__ import annotations

import pytest

from tickcast.hub.redis_follow import Follower, Verdict
from tickcast.hub.redis_publish import Batch, Outbox, confirmed_entries
from tickcast.hub.redis_script import PublishResult, parse_result
from tickcast.messages.tick import Tick


def tick(seq: int, symbol: str = "A") -> Tick:
    return Tick(symbol=symbol, seq=seq, timestamp_ms=1_700_000_000_000, source="sim",
                last_price="1.5")  # fmt: skip


def seqs(batch: Batch | None) -> list[int]:
    assert batch is not None
    return [t.seq for t, _ in batch.ticks]


def test_queued_ticks_go_out_in_batches_without_waiting_for_answers() -> None:
    """Pipelined up to max_in_flight; answers release room; order is kept."""
    box = Outbox(queue_size=100, batch_size=2, max_in_flight=2)
    for seq in range(1, 6):
        assert box.add(tick(seq), None)
    assert seqs(box.next_to_send("n:1", 0.0)) == [1, 2]
    assert seqs(box.next_to_send("n:1", 1.0)) == [3, 4]
    assert box.next_to_send("n:1", 2.0) is None  # two on the wire: the bound
    assert (box.in_flight, box.oldest_sent_at, box.waiting, len(box)) == (2, 0.0, True, 5)
    assert seqs(box.answered()) == [1, 2]
    assert box.oldest_sent_at == 1.0
    assert seqs(box.next_to_send("n:1", 3.0)) == [5]
    assert box.next_to_send("n:1", 3.0) is None and not box.waiting


def test_a_full_queue_drops_its_oldest_tick() -> None:
    """The newest state of a symbol supersedes the oldest queued one."""
    box = Outbox(queue_size=2, batch_size=10, max_in_flight=1)
    assert box.add(tick(1), None) and box.add(tick(2), None)
    assert not box.add(tick(3), None)
    assert seqs(box.next_to_send("n:1", 0.0)) == [2, 3]


def test_a_lost_link_sends_the_unanswered_batches_again_in_order_with_their_fence() -> None:
    """Batches re-sent after a lost link keep the fence of the term that queued them."""
    box = Outbox(queue_size=100, batch_size=1, max_in_flight=4)
    for seq in (1, 2):
        box.add(tick(seq), None)
    first, second = box.next_to_send("n:1", 0.0), box.next_to_send("n:1", 0.0)
    box.add(tick(3), None)
    box.link_lost()
    assert box.in_flight == 0 and box.oldest_sent_at is None and box.waiting
    assert box.next_to_send("n:2", 5.0) == first
    assert box.next_to_send("n:2", 5.0) == second
    third = box.next_to_send("n:2", 5.0)
    assert third is not None and third.fence == "n:2" and seqs(third) == [3]


def test_no_longer_leading_drops_all_but_what_is_on_the_wire() -> None:
    """Deposed: queued ticks and batches waiting to be re-sent go; those Redis has will
    still be answered."""
    box = Outbox(queue_size=100, batch_size=1, max_in_flight=1)
    for seq in (1, 2, 3):
        box.add(tick(seq), None)
    box.next_to_send("n:1", 0.0)
    assert box.drop_all() == 2
    assert box.in_flight == 1 and not box.waiting
    box.link_lost()
    assert box.drop_all() == 1 and len(box) == 0
    assert box.next_to_send(None, 0.0) is None


def result(fates: str, first_prev: int, *, fenced: bool = False) -> PublishResult:
    return PublishResult(fenced, fates.count("a"), fates.count("d"), fates.count("s"),
                         0, "i1", first_prev, 123, fates)  # fmt: skip


def test_the_answer_names_exactly_the_entries_written_each_after_the_previous() -> None:
    """Applied ticks become entries chained by prev; duplicates and stale ones do not."""
    batch = Batch("n:1", tuple((tick(seq), None) for seq in (11, 12, 13, 14)))
    entries = confirmed_entries(batch, result("adsa", first_prev=10))
    assert [(e.seq, e.prev, e.incarnation, e.written_ms) for e in entries] == [
        (11, 10, "i1", 123),
        (14, 11, "i1", 123),
    ]
    assert entries[0].message is batch.ticks[0][0]  # the same object: encoded once
    assert confirmed_entries(batch, result("", 0, fenced=True)) == []
    with pytest.raises(ValueError, match="fates"):
        confirmed_entries(batch, result("aa", 10))


def test_a_follower_behind_the_answer_leaves_it_to_the_reader() -> None:
    """Entries written after ones this node has not read yet are a gap for it, not a
    delivery; those it already has are skipped."""
    batch = Batch("n:1", tuple((tick(seq), None) for seq in (11, 12)))
    entries = confirmed_entries(batch, result("aa", first_prev=10))
    assert Follower(position=8, incarnation="i1").check(entries[0]) is Verdict.GAP
    assert Follower(position=12, incarnation="i1").check(entries[1]) is Verdict.SKIP
    assert Follower(position=10, incarnation="i2").check(entries[0]) is Verdict.NEW_INCARNATION


def test_the_script_reply_is_read_and_a_foreign_one_refused() -> None:
    """Fenced and applied replies parse; a reply of another length is an error."""
    applied = parse_result([1, 2, 0, 1, b"14", b"inc", b"10", b"1700000000123", b"asa"])
    assert (applied.applied, applied.first_prev, applied.written_ms, applied.fates) == (
        2, 10, 1_700_000_000_123, "asa",
    )  # fmt: skip
    fenced = parse_result([-1, 0, 0, 0, b"9", b"", b"0", b"0", b""])
    assert fenced.fenced and fenced.meta_seq == 9
    with pytest.raises(ValueError):
        parse_result([1, 0, 0, 0, b"9", b"inc"])
