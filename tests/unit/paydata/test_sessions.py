import pytest

from services.paydata import protocol
from services.paydata.protocol import UploadError
from services.paydata.sessions import (DONE, LATE, MATCH, MISMATCH, MISSING, Session, admit, is_late,
                                       outcome_of)

SESSION = Session("S1", "E1:O1", "E1", "O1", "sample", 1_000, 121_000)


def test_an_open_session_of_the_platform_is_admitted():
    admit(SESSION, "S1", " E1 ")


@pytest.mark.parametrize(("session", "ebp", "code"), [
    (None, "E1", protocol.UNKNOWN_SESSION),
    (SESSION, "E2", protocol.OTHER_PLATFORM),
    (Session(**{**SESSION.__dict__, "state": DONE}), "E1", protocol.SESSION_USED),
])
def test_unknown_foreign_and_used_sessions_are_refused(session, ebp, code):
    with pytest.raises(UploadError) as caught:
        admit(session, "S1", ebp)
    assert caught.value.code == code


def test_late_after_the_deadline_or_once_missing():
    assert not is_late(SESSION, 121_000) and is_late(SESSION, 121_001)
    assert is_late(Session(**{**SESSION.__dict__, "state": MISSING}), 2_000)
    assert outcome_of(False, False) == MATCH and outcome_of(False, True) == MISMATCH
    assert outcome_of(True, False) == LATE and outcome_of(True, True) == LATE


def test_a_session_survives_its_trip_through_redis_strings():
    assert Session.from_dict(SESSION.as_dict()) == SESSION
