//! `scripts/install-c PREFIX` installs channelbox like a C library, and a C
//! program builds against the installed copy with pkg-config, both ways:
//! shared (loaded through the soname `libchannelbox.so.0`) and static (no
//! libchannelbox at run time at all).
//!
//! The install runs once per test process, into a fresh prefix under
//! cargo's `target/tmp`; it builds the library in release. It needs
//! `patchelf` and `pkg-config` (`scripts/test` installs both).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command`, panicking with its output unless it succeeds.
fn succeed(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// The prefix `scripts/install-c` installed into, installing on first use.
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        for tool in ["patchelf", "pkg-config"] {
            assert!(
                Command::new(tool).arg("--version").output().is_ok(),
                "{tool} is not installed: apt-get install {tool} (scripts/test does)"
            );
        }
        // Earlier runs' prefixes go: each holds a full release library.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install");
        let _ = std::fs::remove_dir_all(&base);
        let prefix = base.join(std::process::id().to_string());
        succeed(
            Command::new(root().join("scripts/install-c"))
                .arg(&prefix)
                .arg("--quiet"),
        );
        prefix
    })
}

/// `pkg-config ARGS channelbox`, reading only the installed .pc file.
fn pkg_config(args: &[&str]) -> Vec<String> {
    let pc_dir = prefix().join("lib/pkgconfig");
    let output = succeed(
        Command::new("pkg-config")
            .env("PKG_CONFIG_PATH", &pc_dir)
            .env("PKG_CONFIG_LIBDIR", &pc_dir)
            .args(args)
            .arg("channelbox"),
    );
    text(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Compiles `source` with `flags` (after the source, as a linker wants
/// libraries) into `name` in a directory of its own.
fn build(source: &str, name: &str, compiler: &str, flags: &[String]) -> PathBuf {
    let dir = prefix().parent().expect("base").join(format!("bin-{name}"));
    std::fs::create_dir_all(&dir).expect("output directory");
    let exe = dir.join(name);
    succeed(
        Command::new(compiler)
            .args(["-Wall", "-Wextra", "-Werror"])
            .arg("-o")
            .arg(&exe)
            .arg(root().join(source))
            .args(flags),
    );
    exe
}

/// The `NEEDED` entries of an ELF file, as `readelf -d` lists them.
fn needed(elf: &Path) -> Vec<String> {
    let output = succeed(Command::new("readelf").arg("-d").arg(elf));
    text(&output.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_owned()))
        .collect()
}

/// Runs a program with nothing from cargo's environment that could point
/// the loader at target/ (`cargo test` sets LD_LIBRARY_PATH).
fn run_clean(exe: &Path, ld_library_path: Option<&Path>) -> String {
    let mut command = Command::new(exe);
    command.env_remove("LD_LIBRARY_PATH");
    if let Some(dir) = ld_library_path {
        command.env("LD_LIBRARY_PATH", dir);
    }
    text(&succeed(&mut command).stdout)
}

#[test]
fn install_lays_out_a_versioned_shared_library_the_archive_headers_and_pc() {
    let lib = prefix().join("lib");
    let real = format!("libchannelbox.so.{VERSION}");
    let major = VERSION.split('.').next().expect("major");
    let soname = format!("libchannelbox.so.{major}");
    assert!(lib.join(&real).is_file());
    assert_eq!(
        std::fs::read_link(lib.join(&soname)).expect("soname link"),
        Path::new(&real)
    );
    assert_eq!(
        std::fs::read_link(lib.join("libchannelbox.so")).expect("dev link"),
        Path::new(&soname)
    );
    assert!(lib.join("libchannelbox.a").is_file());
    let dynamic = succeed(Command::new("readelf").arg("-d").arg(lib.join(&real)));
    assert!(
        text(&dynamic.stdout).contains(&format!("Library soname: [{soname}]")),
        "{}",
        text(&dynamic.stdout)
    );
    for header in ["channelbox.h", "channelbox.hpp"] {
        assert_eq!(
            std::fs::read(prefix().join("include").join(header)).expect("installed header"),
            std::fs::read(root().join("include").join(header)).expect("header"),
            "{header}"
        );
    }
    assert_eq!(pkg_config(&["--modversion"]), vec![VERSION.to_owned()]);
    let include = format!("-I{}", prefix().join("include").display());
    assert_eq!(pkg_config(&["--cflags"]), vec![include]);
    let libs_private = pkg_config(&["--static", "--libs"]);
    for flag in ["-lpthread", "-ldl", "-lm", "-lgcc_s"] {
        assert!(libs_private.iter().any(|f| f == flag), "{libs_private:?}");
    }
}

#[test]
fn c_program_builds_with_pkg_config_and_loads_through_the_soname() {
    let mut flags = pkg_config(&["--cflags", "--libs"]);
    flags.insert(0, "-std=c11".into());
    let exe = build("examples/c/hello.c", "hello_shared", "cc", &flags);
    let major = VERSION.split('.').next().expect("major");
    assert!(
        needed(&exe).contains(&format!("libchannelbox.so.{major}")),
        "{:?}",
        needed(&exe)
    );
    let output = run_clean(&exe, Some(&prefix().join("lib")));
    assert!(
        output.contains("sent: offset 1, delivered to 2"),
        "{output}"
    );
    // The loader found it in the prefix, by the soname's link.
    let ldd = succeed(
        Command::new("ldd")
            .arg(&exe)
            .env("LD_LIBRARY_PATH", prefix().join("lib")),
    );
    let expected = format!("{}", prefix().join("lib/libchannelbox.so.0").display());
    assert!(
        text(&ldd.stdout).contains(&expected),
        "{}",
        text(&ldd.stdout)
    );
}

/// The README's static recipe: `-l:libchannelbox.a` takes the archive, and
/// `--as-needed` drops the shared library that `pkg-config --libs` names
/// too (nothing is left for it to provide).
fn static_flags() -> Vec<String> {
    let mut flags = pkg_config(&["--cflags"]);
    flags.push("-Wl,--as-needed".into());
    flags.push("-l:libchannelbox.a".into());
    flags.extend(pkg_config(&["--static", "--libs"]));
    flags
}

#[test]
fn c_program_links_statically_with_pkg_config_static() {
    let mut flags = static_flags();
    flags.insert(0, "-std=c11".into());
    let exe = build("examples/c/hello.c", "hello_static", "cc", &flags);
    assert!(
        !needed(&exe).iter().any(|n| n.contains("channelbox")),
        "{:?}",
        needed(&exe)
    );
    let ldd = succeed(Command::new("ldd").arg(&exe).env_remove("LD_LIBRARY_PATH"));
    assert!(
        !text(&ldd.stdout).contains("channelbox"),
        "{}",
        text(&ldd.stdout)
    );
    let output = run_clean(&exe, None);
    assert!(
        output.contains("sent: offset 1, delivered to 2"),
        "{output}"
    );
}

#[test]
fn cpp_program_builds_with_pkg_config_both_ways() {
    let mut shared = pkg_config(&["--cflags", "--libs"]);
    shared.insert(0, "-std=c++17".into());
    let exe = build("examples/cpp/hello.cpp", "hello_cpp_shared", "c++", &shared);
    let output = run_clean(&exe, Some(&prefix().join("lib")));
    assert!(output.contains("error: CBX_INVALID_JSON"), "{output}");

    let mut flags = static_flags();
    flags.insert(0, "-std=c++17".into());
    let exe = build("examples/cpp/hello.cpp", "hello_cpp_static", "c++", &flags);
    assert!(!needed(&exe).iter().any(|n| n.contains("channelbox")));
    let output = run_clean(&exe, None);
    assert!(
        output.contains("sent: offset 1, delivered to 2"),
        "{output}"
    );
}
