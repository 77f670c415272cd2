"""Builds the Rust library with cargo and ships it inside the package.

``pip install ./bindings/python`` runs ``cargo build --release --lib -p
channelbox`` in the crate two directories up (``../../Cargo.toml``) and copies
``libchannelbox.so`` next to ``channelbox/__init__.py``. The wheel is tagged
for the platform but not for a Python version or ABI: the package loads the
library with ctypes.

Environment:
  CHANNELBOX_PREBUILT_LIB=/path/libchannelbox.so   ship this file, skip cargo
  CARGO_TARGET_DIR, CARGO                          honoured as cargo does
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 has its own
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent.parent
LIBRARY = {"darwin": "libchannelbox.dylib"}.get(sys.platform, "libchannelbox.so")


def build_library() -> Path:
    prebuilt = os.environ.get("CHANNELBOX_PREBUILT_LIB")
    if prebuilt:
        return Path(prebuilt)
    manifest = CRATE / "Cargo.toml"
    if not manifest.is_file():
        raise SystemExit(
            f"channelbox: no Cargo.toml at {manifest}. Build from the channelbox repository "
            "(pip install ./bindings/python), or set CHANNELBOX_PREBUILT_LIB to a built library."
        )
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise SystemExit(
            "channelbox: cargo is needed to build the native library; install Rust "
            "(https://rustup.rs) or set CHANNELBOX_PREBUILT_LIB to a built library."
        )
    command = [
        # `-p channelbox`: the root manifest is also the workspace's, and
        # without it cargo builds every member's library (the example hub
        # too: a minute more, and shared dependencies with other features,
        # so the next `cargo build -p channelbox` compiled channelbox again).
        cargo, "build", "--release", "--lib", "-p", "channelbox",
        "--manifest-path", str(manifest),
        "--message-format=json-render-diagnostics",
    ]
    print("channelbox: " + " ".join(command), file=sys.stderr)
    result = subprocess.run(command, cwd=CRATE, stdout=subprocess.PIPE, check=False)
    if result.returncode != 0:
        raise SystemExit(f"channelbox: cargo build failed (exit {result.returncode})")
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("reason") == "compiler-artifact" and message.get("target", {}).get("name") == "channelbox":
            for filename in message.get("filenames", []):
                if Path(filename).name == LIBRARY:
                    return Path(filename)
    raise SystemExit(f"channelbox: cargo did not report {LIBRARY} among its artifacts")


class BuildPyWithLibrary(build_py):
    """build_py that also builds the Rust library and copies it into the package."""

    def run(self) -> None:
        super().run()
        library = build_library()
        target = Path(self.build_lib) / "channelbox" / LIBRARY
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library, target)
        os.chmod(target, 0o755)
        print(f"channelbox: shipping {library} as {target}", file=sys.stderr)


class PlatformWheel(bdist_wheel):
    """A platform wheel (it carries a native library) for any Python 3."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):  # type: ignore[no-untyped-def]
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel})
