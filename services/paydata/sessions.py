"""A session customs opened with a platform for one declaration, and what an upload to it is (pure).

A session is ``open`` from its request until an upload or the deadline; at the deadline with
nothing received it is ``missing`` (PAYDATA_MISSING goes out); an upload then still counts,
as PAYDATA_LATE. A session answered once is ``done``: the same sessionID again is refused.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from services.paydata.protocol import OTHER_PLATFORM, SESSION_USED, UNKNOWN_SESSION, UploadError

OPEN, MISSING, DONE = "open", "missing", "done"
MATCH, MISMATCH, LATE, MISSING_OUTCOME = "PAYDATA_MATCH", "PAYDATA_MISMATCH", "PAYDATA_LATE", "PAYDATA_MISSING"
OUTCOMES = (MATCH, MISMATCH, LATE, MISSING_OUTCOME)


@dataclass(frozen=True)
class Session:
    session_id: str
    declaration_id: str
    ebp_code: str
    order_no: str
    reason: str          # "sample" or "operator"
    requested_at: int    # ms
    deadline: int        # ms
    state: str = OPEN

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict) -> "Session":
        return cls(raw["session_id"], raw["declaration_id"], raw["ebp_code"], raw["order_no"], raw["reason"],
                   int(raw["requested_at"]), int(raw["deadline"]), raw.get("state", OPEN))


def admit(session: Session | None, session_id: str, ebp_code: str) -> None:
    """Raise ``UploadError`` unless an upload naming ``session_id`` from platform ``ebp_code``
    may be taken: customs issued it, to that platform, and it has not been answered yet."""
    if session is None:
        raise UploadError(UNKNOWN_SESSION, "sessionID", "not a session customs opened (send the sessionID of the "
                                                        "platDataOpen request unchanged)")
    if session.ebp_code != ebp_code.strip():
        raise UploadError(OTHER_PLATFORM, "payExchangeInfoHead.ebpCode",
                          "the session was opened with another platform")
    if session.state == DONE:
        raise UploadError(SESSION_USED, "sessionID", "this session has already been answered")


def is_late(session: Session, received_at: int) -> bool:
    return session.state == MISSING or received_at > session.deadline


def outcome_of(late: bool, mismatched: bool) -> str:
    return LATE if late else MISMATCH if mismatched else MATCH
