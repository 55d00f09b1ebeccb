"""kafka-python checks every record batch's CRC-32C; without the `crc32c` package it does so in
pure Python, which made reading a topic (the rebuilds read whole topics) 5.2x the CPU."""
from kafka.record import util


def test_kafka_python_checks_record_batches_with_the_c_checksum():
    assert util.crc32c_c is not None, "the crc32c package is missing: pip install -e . (pyproject.toml)"
    assert util.calc_crc32c(b"123456789") == 0xE3069283  # CRC-32C's check value
