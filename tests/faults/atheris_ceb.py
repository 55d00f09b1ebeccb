"""Coverage-guided fuzzing of the CEB XML codec with atheris (libFuzzer), run by test_fuzz_ceb.py.

Every input must parse or raise ``CebError``; any other exception is a crash, which
libFuzzer reports (non-zero exit, the input saved under -artifact_prefix). libFuzzer says
how many inputs it ran on stderr ("Done N runs").

The memory bound is the process's own address space (an input that makes the codec allocate
past it raises MemoryError, a crash with that input saved): libFuzzer's -rss_limit_mb reads
ru_maxrss, which execve keeps, so a run started by pytest measured pytest's peak instead.
"""
import resource
import sys

import atheris

with atheris.instrument_imports(include=["services.common.ceb"]):
    from services.common.ceb import CebError, parse_message


def one_input(data: bytes) -> None:
    try:
        parse_message(data, source="atheris", lenient=True, xsd_dir="", max_bytes=1 << 20)
    except CebError:
        pass


MEMORY_BOUND = 1 << 30  # the run itself needs under 100 MB of address space

if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
