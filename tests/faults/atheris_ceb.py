"""Coverage-guided fuzzing of the CEB XML codec with atheris (libFuzzer), run by test_fuzz_ceb.py.

Every input must parse or raise ``CebError``; any other exception is a crash, which
libFuzzer reports (non-zero exit, the input saved under -artifact_prefix). libFuzzer says
how many inputs it ran on stderr ("Done N runs").
"""
import sys

import atheris

with atheris.instrument_imports(include=["services.common.ceb"]):
    from services.common.ceb import CebError, parse_message


def one_input(data: bytes) -> None:
    try:
        parse_message(data, source="atheris", lenient=True, xsd_dir="", max_bytes=1 << 20)
    except CebError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
