"""`sandan customs report` / `sandan warehouse arrive` refuse bad arguments before touching Kafka
(publishing itself is covered by tests/integration/test_returns_stream.py)."""
from __future__ import annotations

import pytest

from services.cli import main


@pytest.mark.parametrize("argv, problem", [
    (["warehouse", "arrive", "--logistics-no", "SD1", "--sorting", "fit", "--lines", "1:x"], "gnum:qty"),
    (["warehouse", "arrive", "--logistics-no", "SD1", "--sorting", "fit", "--at", "2025-03-20"], "YYYYMMDDhhmmss"),
    (["customs", "report", "--order-no", "O1", "--ebp-code", "E1", "--status", "800", "--at", "yesterday"],
     "YYYYMMDDhhmmss"),
])
def test_bad_arguments_exit_2_with_one_line(argv, problem, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err and err.count("\n") == 1


def test_sorting_and_status_take_only_known_values(capsys):
    with pytest.raises(SystemExit):
        main(["warehouse", "arrive", "--logistics-no", "SD1", "--sorting", "maybe"])
    with pytest.raises(SystemExit):
        main(["customs", "report", "--order-no", "O1", "--ebp-code", "E1", "--status", "801"])
