"""The edge's token bookkeeping as plain calls: admission, subjects, the expiry sweep."""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson

from tickcast.edge.access import Access, Admission
from tickcast.edge.session import Limits, Session
from tickcast.errors import CloseReason
from tickcast.settings import Settings

from ..fakes import FakeTime, RecordingTransport
from .tokenkit import SECRET, hs256

SERVED = frozenset({"BTCUSDT", "ETHUSDT", "BTCUSDT@trades"})


class Wall:
    """The wall clock the access checks read, moved by the test (from now: PyJWT reads the
    real one when it checks exp)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make_access(wall: Wall, **settings: object) -> tuple[Access, list[tuple[int, list[str]]]]:
    unsubscribed: list[tuple[int, list[str]]] = []

    def unsubscribe(session: Session, keys: Iterable[str]) -> None:
        unsubscribed.append((session.id, list(keys)))
        session.unsubscribed(keys)

    values = {"jwt_secret": SECRET, "jwt_leeway": 0, **settings}
    access = Access(Settings(**values), unsubscribe, clock=wall)  # type: ignore[arg-type]
    return access, unsubscribed


def make_session(number: int = 1) -> tuple[Session, RecordingTransport]:
    transport = RecordingTransport()
    clock = FakeTime()
    session = Session(
        number, transport, SERVED, limits=Limits(), clock=clock, schedule=clock.schedule
    )
    return session, transport


def token(wall: Wall, sub: str = "alice", ttl: float = 3600, **extra: object) -> str:
    return hs256({"sub": sub, "exp": int(wall.now + ttl), **extra})


def sent(transport: RecordingTransport) -> list[dict[str, object]]:
    return [orjson.loads(w) for w in transport.writes]


def test_a_token_is_warned_30_s_before_exp_then_closed_4001() -> None:
    wall = Wall()
    access, _ = make_access(wall)
    admission = access.admit(None, token(wall, ttl=100))
    assert admission.grant is not None
    session, transport = make_session()
    access.attach(session, admission)
    wall.now += 69
    access.sweep()
    assert sent(transport) == []
    wall.now += 2
    access.sweep()
    warning = sent(transport)[-1]
    assert warning["type"] == "token_expiring" and 28_000 <= warning["in_ms"] <= 30_000
    wall.now += 30
    access.sweep()
    assert transport.closed_with is CloseReason.TOKEN_EXPIRED
    assert sent(transport)[-1]["code"] == "token_expired"


def test_a_refresh_moves_the_expiry_and_another_subject_is_refused() -> None:
    wall = Wall()
    access, _ = make_access(wall)
    session, transport = make_session()
    access.attach(session, access.admit(f"Bearer {token(wall, ttl=40)}", None))
    access.on_token(session, "refresh", token(wall, sub="mallory", ttl=900), 1)
    refused = sent(transport)[-1]
    assert refused["reason"] == "subject_changed" and access.refused["subject_changed"] == 1
    access.on_token(session, "refresh", token(wall, ttl=900), 2)
    assert sent(transport)[-1]["op"] == "refresh"
    wall.now += 100
    access.sweep()
    assert transport.closed_with is None and sent(transport)[-1]["type"] == "ack"


def test_a_narrower_refreshed_token_unsubscribes_what_it_no_longer_allows() -> None:
    wall = Wall()
    access, unsubscribed = make_access(wall)
    session, transport = make_session()
    access.attach(session, access.admit(None, token(wall)))
    session.symbols.update({"BTCUSDT", "ETHUSDT"})
    access.on_token(session, "refresh", token(wall, streams=["BTCUSDT@*"]), None)
    assert unsubscribed == [(1, ["ETHUSDT"])] and session.symbols == {"BTCUSDT"}
    assert sent(transport)[-1]["code"] == "forbidden"


def test_a_pending_client_authenticates_or_is_closed_after_the_timeout() -> None:
    wall = Wall()
    access, _ = make_access(wall)
    started: list[int] = []
    for number in (1, 2):
        session, transport = make_session(number)
        admission = access.admit(None, None, may_wait=True)
        assert admission == Admission(pending=True)
        access.attach(session, admission)
        access.when_granted(session, lambda n=number: started.append(n))
        if number == 1:
            access.on_token(session, "auth", token(wall), "a")
            assert sent(transport)[-1]["op"] == "auth" and started == [1]
            first = transport
    wall.now += 5
    access.sweep()
    assert transport.closed_with is CloseReason.UNAUTHORIZED and started == [1]
    assert first.closed_with is None
    assert access.refused["missing"] == 1


def test_subjects_are_counted_and_capped_and_shown_as_counts_only() -> None:
    wall = Wall()
    access, _ = make_access(wall, max_connections_per_subject=2)
    sessions = []
    for number in (1, 2):
        session, _ = make_session(number)
        access.attach(session, access.admit(None, token(wall)))
        sessions.append(session)
    refused = access.admit(None, token(wall))
    assert refused.denial is not None and refused.denial.status == 429
    assert access.admit(None, token(wall, sub="bob")).grant is not None
    status = access.status()
    assert status["subjects"] == 1 and status["most_connections_of_a_subject"] == 2
    assert "alice" not in str(status)
    access.detach(sessions[0])
    assert access.admit(None, token(wall)).grant is not None


def test_the_shared_token_works_beside_jwt_and_alone() -> None:
    wall = Wall()
    access, _ = make_access(wall, token="shared-secret")
    assert access.admit("Bearer shared-secret", None) == Admission()
    assert access.admit(None, token(wall)).grant is not None
    alone, _ = make_access(wall, token="shared-secret", jwt_secret="")
    assert alone.mode == "shared_token"
    denial = alone.admit(None, "wrong").denial
    assert denial is not None and denial.reason is not None
    assert denial.reason.value == "bad_signature"
    assert alone.admit(None, None).denial is not None
    assert alone.admit(None, "shared-secret") == Admission()


def test_an_auth_op_may_carry_the_shared_token() -> None:
    wall = Wall()
    access, _ = make_access(wall, token="shared-secret")
    session, transport = make_session()
    access.attach(session, access.admit(None, None, may_wait=True))
    started: list[bool] = []
    access.when_granted(session, lambda: started.append(True))
    access.on_token(session, "auth", "shared-secret", 1)
    assert started == [True] and not session.awaiting_auth and session.grant is None
    assert sent(transport)[-1] == {"type": "ack", "id": 1, "op": "auth"}
    wall.now += 10
    access.sweep()
    assert transport.closed_with is None
