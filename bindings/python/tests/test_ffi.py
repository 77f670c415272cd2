"""The hand-copied constants in ``channelbox._ffi`` match the library and its header."""

import re
from pathlib import Path

import pytest

from channelbox import CloseReason, _ffi, errors
from channelbox._ffi import lib

HEADER = Path(__file__).resolve().parents[3] / "include" / "channelbox.h"
# Result codes do not overlap errno: 0, then 7000-7999. Scan well beyond that.
SCANNED = range(-1000, 10_000)


def result_name(code):
    return lib.cbx_result_name(code).decode()


def header_constants():
    if not HEADER.is_file():
        pytest.skip(f"no header at {HEADER} (tests run outside the repository)")
    return {
        name: int(value)
        for name, value in re.findall(r"^#define (CBX_[A-Z0-9_]+) (-?\d+)\s*$", HEADER.read_text(), re.M)
    }


def ffi_constants():
    return {name: value for name, value in vars(_ffi).items() if name.startswith("CBX_") and isinstance(value, int)}


def test_every_result_constant_is_what_the_library_calls_that_code():
    assert _ffi.RESULTS["CBX_OK"] == 0
    for name, code in _ffi.RESULTS.items():
        assert result_name(code) == name, f"_ffi.{name} = {code}, but the library calls {code} {result_name(code)}"


def test_every_code_the_library_names_has_a_constant():
    named = {result_name(code): code for code in SCANNED if result_name(code) != "CBX_UNKNOWN"}
    assert named == _ffi.RESULTS


def test_every_constant_matches_the_header_and_the_header_has_no_other():
    assert ffi_constants() == header_constants()


def test_close_reasons_are_the_headers_close_codes():
    codes = {name: value for name, value in header_constants().items() if name.startswith("CBX_CLOSE_")}
    assert codes.pop("CBX_CLOSE_NONE") == 0  # an open connection: close_reason is None
    assert {f"CBX_CLOSE_{reason.name}": reason.value for reason in CloseReason} == codes


def test_results_are_the_constants_the_library_names():
    results = {name for name, value in ffi_constants().items() if result_name(value) == name}
    assert results == set(_ffi.RESULTS)


def test_every_failure_code_has_its_own_exception_class():
    failures = {code for name, code in _ffi.RESULTS.items() if name != "CBX_OK"}
    assert set(errors._BY_CODE) == failures
    for code in failures:
        error = errors.error_for(code)
        assert type(error) is errors._BY_CODE[code] and error.code == code
        assert error.code_name == result_name(code)
