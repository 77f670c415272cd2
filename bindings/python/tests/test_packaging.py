"""Finding and checking the native library."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import channelbox
from channelbox import _ffi


def import_with(lib_path):
    env = dict(os.environ, CHANNELBOX_LIB=str(lib_path))
    return subprocess.run([sys.executable, "-c", "import channelbox"], env=env, capture_output=True, text=True)


def test_the_package_ships_its_library_and_py_typed():
    package = Path(channelbox.__file__).parent
    assert (package / "py.typed").is_file()
    if "CHANNELBOX_LIB" not in os.environ:
        assert _ffi.library_path() == package / _ffi.LIBRARY_NAME
        assert _ffi.library_path().is_file()


def test_channelbox_lib_overrides_the_library(tmp_path):
    copy = tmp_path / "libcopy.so"
    shutil.copyfile(_ffi.library_path(), copy)
    env = dict(os.environ, CHANNELBOX_LIB=str(copy))
    out = subprocess.run(
        [sys.executable, "-c", "from channelbox import _ffi; print(_ffi.library_path())"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == str(copy)


def test_a_missing_library_fails_the_import_with_what_to_do(tmp_path):
    result = import_with(tmp_path / "nope.so")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "nope.so" in result.stderr and "CHANNELBOX_LIB" in result.stderr
    assert "pip install ./bindings/python" in result.stderr


def test_a_file_that_is_not_a_library_fails_the_import(tmp_path):
    bogus = tmp_path / "libchannelbox.so"
    bogus.write_text("not an ELF file")
    result = import_with(bogus)
    assert result.returncode != 0 and "cannot load" in result.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_a_library_of_another_version_fails_the_import(tmp_path):
    source = tmp_path / "old.c"
    source.write_text('const char *cbx_version(void) { return "0.0.1"; }\n')
    lib = tmp_path / "libold.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    result = import_with(lib)
    assert result.returncode != 0
    assert "'0.0.1'" in result.stderr and f"'{channelbox.__version__}'" in result.stderr
    assert "must match" in result.stderr
