"""Personal data protection and the settings table."""
from __future__ import annotations

from services.common import config, pii


def test_buyer_key_is_keyed_stable_and_does_not_contain_the_number(monkeypatch):
    number = "330106198803157719"
    key = pii.buyer_key(number)
    assert key == pii.buyer_key(f" {number} ")
    assert number not in key and len(key) == 32
    monkeypatch.setenv("SANDAN_PII_KEY", "another-secret")
    assert pii.buyer_key(number) != key  # without the secret the key space cannot be rebuilt


def test_buyer_key_is_the_number_trimmed_and_upper_cased_whatever_its_type():
    # DOMAIN §3: the year-to-date total counts P per ID number; x and X are one check digit.
    assert pii.buyer_key("11010519491231002x") == pii.buyer_key(" 11010519491231002X\t")
    assert pii.buyer_key("11010519491231002X") != pii.buyer_key("110105194912310021")
    assert pii.buyer_id_number(" 11010519491231002x ") == "11010519491231002X"


def test_mask_and_redact_hide_personal_fields_only():
    doc = {"buyerIdNumber": "330106198803157719", "buyerName": "张伟", "orderNo": "O1"}
    red = pii.redact(doc)
    assert red["orderNo"] == "O1"
    assert red["buyerIdNumber"] == "33**************19"
    assert red["buyerName"] == "**"


def test_every_setting_is_documented_in_the_markdown_table():
    table = config.markdown_table()
    for setting in config.SETTINGS:
        assert f"`{setting.env}`" in table
        assert setting.doc


def test_the_readme_settings_table_is_the_generated_one():
    readme = (config.PROJECT_ROOT / "README.md").read_text()
    assert config.markdown_table().strip() in readme, "README's settings table is stale: paste `sandan config`"
