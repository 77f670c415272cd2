"""The package version. It must equal the Rust crate's (``cbx_version()``)."""

__version__ = "0.1.0"
