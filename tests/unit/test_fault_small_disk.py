"""The disk-full scenarios' filler writes only onto the suite's own small filesystem: another
session's clean-up once unmounted it under a running test, and the filler then filled the
machine's real disk (every broker on it stopped)."""
from __future__ import annotations

import pytest

from services.common import config
from tests.faults import netfault, small_disk


def test_the_filler_refuses_a_folder_that_is_not_a_small_filesystem_of_the_suite(tmp_path):
    with pytest.raises(small_disk.NotASmallDisk, match="is not a small filesystem of this suite"):
        small_disk.fill(tmp_path)
    assert list(tmp_path.iterdir()) == []  # not a byte written


def test_mounts_rules_and_cgroups_carry_this_checkouts_own_tag():
    """Two checkouts' suites on one machine: each cleans up only what carries its own tag."""
    assert small_disk.TAG == small_disk.tag_of("sandan-faults-disk", config.PROJECT_ROOT)
    assert netfault.TAG == small_disk.tag_of("sandan-faults", config.PROJECT_ROOT)
    other = small_disk.tag_of("sandan-faults-disk", config.PROJECT_ROOT.parent / "another-checkout")
    assert other != small_disk.TAG and other.startswith("sandan-faults-disk-")
