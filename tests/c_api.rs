//! The C API as a C program sees it: builds every program in `tests/c/`
//! (and `examples/c/hello.c`) with the system C compiler against
//! `include/channelbox.h`, links it to the `libchannelbox.so` cargo built
//! for this run, and runs it. A failing program fails its test with the
//! program's output.
//!
//! The C++ programs in `tests/cpp/` (and `examples/cpp/hello.cpp`) test
//! `include/channelbox.hpp` the same way.
//!
//! With `CBX_VALGRIND=1` (and valgrind installed) each program also runs
//! under valgrind, which must report no error and no definite leak. With
//! `CBX_SANITIZE=1` each program is also built with AddressSanitizer and
//! UndefinedBehaviorSanitizer (`-fsanitize=address,undefined
//! -fno-sanitize-recover=all`) and run with LeakSanitizer on: any report
//! fails the test. The Rust library stays uninstrumented (sanitizing it
//! needs a nightly toolchain), but ASan and LSan intercept its `malloc` and
//! `free`, so a handle the program leaks or frees twice is still caught.
//! `CC` and `CXX` choose the compilers (default `cc` and `c++`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const C_FLAGS: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-std=c11",
    "-pthread",
    "-g",
];
const CXX_FLAGS: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-std=c++17",
    "-pthread",
    "-g",
];

/// Added to build a program with AddressSanitizer and
/// UndefinedBehaviorSanitizer; the first UB report ends the program.
const SANITIZE_FLAGS: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
];

/// How long one program may run before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Valgrind runs programs tens of times slower.
const VALGRIND_TIMEOUT: Duration = Duration::from_secs(900);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the `libchannelbox.so` cargo built for this run.
/// The test executable is `target/<profile>/deps/c_api-<hash>`; `cargo
/// test` builds the cdylib into that `deps/` (it copies it up to
/// `target/<profile>/` only on `cargo build`, so the copy there may be
/// stale), hence `deps/` first.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    let profile = deps.parent().expect("profile directory");
    for dir in [deps, profile] {
        if dir.join("libchannelbox.so").exists() {
            return dir.to_path_buf();
        }
    }
    panic!(
        "libchannelbox.so is not in {} or {}: run `cargo build` first",
        deps.display(),
        profile.display()
    );
}

/// Where the compiled programs and their output go: one directory per
/// test process, so concurrent `cargo test` runs in the same tree never
/// overwrite each other's executables.
fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("c_api")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).expect("create output directory");
    dir
}

/// Removes a passed program and its logs (a failed one's stay for a look).
/// The directory stays: another test of this process may be compiling
/// into it right now.
fn clean_up(exe: &Path) {
    let name = exe.file_name().expect("file name").to_string_lossy();
    for suffix in [
        "",
        ".stdout",
        ".stderr",
        "-valgrind.stdout",
        "-valgrind.stderr",
    ] {
        let _ = std::fs::remove_file(exe.with_file_name(format!("{name}{suffix}")));
    }
}

/// Compiles one source file into an executable and returns its path: C or
/// C++ by the file's extension, with the sanitizers when `sanitize`.
fn compile(source: &str, sanitize: bool) -> PathBuf {
    let source = root().join(source);
    let cxx = source.extension().is_some_and(|e| e == "cpp");
    let stem = source.file_stem().expect("file name").to_string_lossy();
    let exe = out_dir().join(format!(
        "{stem}{}{}",
        if cxx { "_cpp" } else { "" },
        if sanitize { "_sanitized" } else { "" }
    ));
    let lib = lib_dir();
    let (compiler, flags) = if cxx {
        (
            std::env::var("CXX").unwrap_or_else(|_| "c++".into()),
            CXX_FLAGS,
        )
    } else {
        (std::env::var("CC").unwrap_or_else(|_| "cc".into()), C_FLAGS)
    };
    let version = format!("-DCBX_EXPECTED_VERSION=\"{}\"", env!("CARGO_PKG_VERSION"));
    // The program comes before the library on the command line, so the
    // sanitizer runtime the compiler adds is first in the link order.
    let sanitize_flags: &[&str] = if sanitize { SANITIZE_FLAGS } else { &[] };
    let output = Command::new(&compiler)
        .args(flags)
        .args(sanitize_flags)
        .arg(version)
        .arg("-I")
        .arg(root().join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .arg("-L")
        .arg(&lib)
        .arg("-lchannelbox")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the compiler `{compiler}`: {e}"));
    assert!(
        output.status.success(),
        "{compiler} failed on {}:\n{}{}",
        source.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

/// Runs a command to completion within `timeout`, output going to files
/// (no pipe to fill up), and returns (success, stdout + stderr).
fn run_with_timeout(mut command: Command, log: &Path, timeout: Duration) -> (bool, String) {
    let stdout = File::create(log.with_extension("stdout")).expect("stdout file");
    let stderr = File::create(log.with_extension("stderr")).expect("stderr file");
    // cargo's LD_LIBRARY_PATH may list target/<profile>/ (a stale copy,
    // see `lib_dir`) ahead of the rpath: the library this run built wins.
    let mut child = command
        .env("LD_LIBRARY_PATH", lib_dir())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |ext| std::fs::read_to_string(log.with_extension(ext)).unwrap_or_default();
    let mut text = read("stdout");
    text.push_str(&read("stderr"));
    match status {
        Some(status) if status.success() => (true, text),
        Some(status) => (false, format!("{text}\n(exit: {status})")),
        None => (false, format!("{text}\n(killed after {timeout:?})")),
    }
}

fn valgrind_wanted() -> bool {
    std::env::var("CBX_VALGRIND").is_ok_and(|v| v == "1")
}

fn sanitize_wanted() -> bool {
    std::env::var("CBX_SANITIZE").is_ok_and(|v| v == "1")
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds and runs one program: plainly, under valgrind when
/// `CBX_VALGRIND=1`, and built with the sanitizers when `CBX_SANITIZE=1`.
/// Panics with its output when any run fails; returns the plain run's
/// output.
fn check(source: &str) -> String {
    let output = run(&compile(source, false));
    if sanitize_wanted() {
        run_sanitized(&compile(source, true));
    } else {
        let name = Path::new(source).file_name().expect("file name");
        println!(
            "note: {}: sanitizers skipped (set CBX_SANITIZE=1 to run them)",
            name.to_string_lossy()
        );
    }
    output
}

/// Runs a program built with the sanitizers: LeakSanitizer on, and any
/// report (which ends the program with an error) fails the test.
fn run_sanitized(exe: &Path) {
    let name = exe
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let mut command = Command::new(exe);
    command
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
    let (ok, output) = run_with_timeout(command, exe, TIMEOUT);
    assert!(
        ok,
        "{name} failed under AddressSanitizer/UndefinedBehaviorSanitizer ({}):\n{output}",
        exe.display()
    );
    println!("{name}: AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer clean");
    clean_up(exe);
}

/// Runs a compiled program (and again under valgrind when asked); panics
/// with its output when it fails. Returns its output of the plain run.
fn run(exe: &Path) -> String {
    let name = exe
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let (ok, output) = run_with_timeout(Command::new(exe), exe, TIMEOUT);
    assert!(ok, "{name} failed ({}):\n{output}", exe.display());
    print!("{output}");

    if !valgrind_wanted() {
        println!("note: {name}: valgrind skipped (set CBX_VALGRIND=1 to run it)");
        clean_up(exe);
        return output;
    }
    if !valgrind_available() {
        println!("note: {name}: CBX_VALGRIND=1 but valgrind is not installed; skipped");
        clean_up(exe);
        return output;
    }
    let mut command = Command::new("valgrind");
    command
        .args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
        ])
        .arg(exe);
    let log = exe.with_file_name(format!("{name}-valgrind"));
    let (ok, vg_output) = run_with_timeout(command, &log, VALGRIND_TIMEOUT);
    assert!(
        ok,
        "{name} failed under valgrind ({}):\n{vg_output}",
        exe.display()
    );
    println!("{name}: valgrind clean");
    clean_up(exe);
    output
}

/// The names of the functions `text` calls or declares: `cbx_<name>(`.
fn called_functions(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("cbx_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with('(') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Every function the header declares is called by the C tests, so a new
/// entry point comes with its tests.
#[test]
fn every_header_function_is_called_by_a_c_test() {
    let header = std::fs::read_to_string(root().join("include/channelbox.h")).expect("header");
    let mut tests = String::new();
    for entry in std::fs::read_dir(root().join("tests/c")).expect("tests/c") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "c") {
            tests.push_str(&std::fs::read_to_string(&path).expect("C test"));
        }
    }
    let declared = called_functions(&header);
    assert!(declared.len() > 20, "no functions found in the header");
    let called = called_functions(&tests);
    let missing: Vec<&String> = declared.difference(&called).collect();
    assert!(
        missing.is_empty(),
        "no C test in tests/c/ calls {missing:?}: add bad-input and behaviour checks"
    );
}

#[test]
fn c_bad_input_is_refused_at_every_entry_point() {
    check("tests/c/bad_input.c");
}

#[test]
fn c_api_behaves_as_documented() {
    check("tests/c/behaviour.c");
}

#[test]
fn c_api_is_safe_from_many_threads() {
    check("tests/c/threads.c");
}

#[test]
fn header_compiles_and_links_as_cpp() {
    check("tests/c/cpp_compat.cpp");
}

#[test]
fn c_example_hello_builds_and_runs() {
    let output = check("examples/c/hello.c");
    assert!(
        output.contains("sent: offset 1, delivered to 2"),
        "{output}"
    );
    assert!(output.contains("history: {"), "{output}");
}

#[test]
fn c_json_payload_with_invalid_utf8_is_refused() {
    check("tests/c/json_utf8.c");
}

#[test]
fn c_accepted_json_payloads_are_not_lost_in_history() {
    check("tests/c/json_history.c");
}

#[test]
fn c_direct_send_that_disconnects_returns_closed() {
    check("tests/c/conn_send_closing.c");
}

#[test]
fn c_history_dir_keeps_history_and_an_unopenable_store_is_refused() {
    check("tests/c/durable_history.c");
}

/// Every function the C header declares is wrapped by the C++ header.
#[test]
fn every_header_function_is_wrapped_by_the_cpp_header() {
    let header = std::fs::read_to_string(root().join("include/channelbox.h")).expect("header");
    let cpp = std::fs::read_to_string(root().join("include/channelbox.hpp")).expect("C++ header");
    let declared = called_functions(&header);
    let wrapped = called_functions(&cpp);
    let missing: Vec<&String> = declared.difference(&wrapped).collect();
    assert!(
        missing.is_empty(),
        "include/channelbox.hpp does not wrap {missing:?}"
    );
}

#[test]
fn cpp_wrappers_behave_as_documented() {
    check("tests/cpp/wrappers.cpp");
}

#[test]
fn cpp_errors_are_exceptions_with_the_c_code() {
    check("tests/cpp/errors.cpp");
}

#[test]
fn cpp_example_hello_builds_and_runs() {
    let output = check("examples/cpp/hello.cpp");
    assert!(
        output.contains("sent: offset 1, delivered to 2"),
        "{output}"
    );
    assert!(output.contains("error: CBX_INVALID_JSON"), "{output}");
}

#[test]
fn cpp_overhead_example_builds_and_runs() {
    let output = check("examples/cpp/overhead.cpp");
    assert!(
        output.contains("c: 1000 messages, 100000 bytes"),
        "{output}"
    );
    assert!(
        output.contains("cpp: 1000 messages, 100000 bytes"),
        "{output}"
    );
}
