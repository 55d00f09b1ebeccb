import re
import uuid

from services.common.guids import random_guid
from services.common.receipts import ACCEPTED, receipt

CEB_GUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$")


def test_a_random_guid_is_an_upper_case_version_4_uuid():
    for _ in range(2000):
        guid = random_guid()
        assert CEB_GUID.match(guid), guid
        parsed = uuid.UUID(guid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed).upper() == guid


def test_random_guids_do_not_repeat_and_use_every_variant_digit():
    guids = [random_guid() for _ in range(20_000)]
    assert len(set(guids)) == len(guids)
    assert {g[19] for g in guids} == set("89AB")
    assert len({g[0] for g in guids}) == 16  # the random digits take every value


def test_each_receipt_has_its_own_guid():
    doc = {"message": "CEB311", "guid": "A" * 36, "orderNo": "O1", "ebpCode": "E1", "ebcCode": "E1",
           "sender": "E1"}
    first, second = (receipt(doc, ACCEPTED, "ok", (), 0) for _ in range(2))
    assert CEB_GUID.match(first["guid"]) and first["guid"] != second["guid"]
