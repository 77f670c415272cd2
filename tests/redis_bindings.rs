//! The Redis engine through the C ABI and the Python package: selected by
//! the config JSON alone, two hubs (nodes) in one process share a group.
//! Each test starts its own `redis-server` on a free loopback port
//! (`scripts/ensure-redis.sh` installs it); the C test needs `cc`, the
//! Python one `python3`, and each says so and passes when they are missing.
#![cfg(feature = "redis")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use channelbox_test_support::RedisServer;

/// The directory holding the `libchannelbox.so` cargo built for this run
/// (`target/<profile>/deps`, or its parent after `cargo build`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        if dir.join("libchannelbox.so").exists() {
            return dir.to_path_buf();
        }
    }
    panic!("libchannelbox.so not found near {}", deps.display());
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

const C_PROGRAM: &str = r#"
#include <stdio.h>
#include <string.h>
#include "channelbox.h"

#define CHECK(x) do { cbx_result r_ = (x); if (r_ != CBX_OK) { \
    fprintf(stderr, "%s:%d %s -> %s: %s\n", __FILE__, __LINE__, #x, \
            cbx_result_name(r_), cbx_last_error()); return 1; } } while (0)
#define EXPECT(c) do { if (!(c)) { fprintf(stderr, "%s:%d expected %s\n", \
    __FILE__, __LINE__, #c); return 1; } } while (0)

int main(int argc, char **argv) {
    char config[512];
    cbx_hub *a = NULL, *b = NULL;
    snprintf(config, sizeof config,
             "{\"engine\": \"redis\", \"redis_url\": \"%s\", \"node_name\": \"c-a\"}", argv[1]);
    CHECK(cbx_hub_new(config, &a));
    snprintf(config, sizeof config,
             "{\"engine\": \"redis\", \"redis_url\": \"%s\", \"node_name\": \"c-b\"}", argv[1]);
    CHECK(cbx_hub_new(config, &b));
    uint64_t ca, cb;
    CHECK(cbx_conn_open(a, "alice", 0, &ca));
    CHECK(cbx_conn_open(b, "bob", 0, &cb));
    CHECK(cbx_group_add(a, ca, "room"));
    CHECK(cbx_group_add(b, cb, "room"));
    const char *hi = "{\"text\":\"hi\"}";
    cbx_send_report report;
    memset(&report, 0, sizeof report);
    CHECK(cbx_group_send(a, "room", CBX_JSON, (const uint8_t *)hi, strlen(hi),
                         CBX_SAVE_HISTORY, &report));
    EXPECT(report.offset == 1);
    cbx_message *m = NULL;
    CHECK(cbx_conn_recv(b, cb, 5000, &m));
    size_t len = 0;
    const uint8_t *data = cbx_message_data(m, &len);
    EXPECT(len == strlen(hi) && memcmp(data, hi, len) == 0);
    EXPECT(cbx_message_offset(m) == 1);
    EXPECT(strcmp(cbx_message_group(m), "room") == 0);
    cbx_message_free(m);
    char *stats = NULL;
    CHECK(cbx_stats_json(b, &stats));
    EXPECT(strstr(stats, "\"engine_connected\":1") != NULL);
    cbx_string_free(stats);
    cbx_hub_free(a);
    cbx_hub_free(b);

    cbx_hub *down = NULL;
    cbx_result r = cbx_hub_new(
        "{\"engine\": \"redis\", \"redis_url\": \"redis://127.0.0.1:1/\", \"redis_timeout_ms\": 300}",
        &down);
    EXPECT(r == CBX_ENGINE_UNAVAILABLE && down == NULL);
    r = cbx_hub_new("{\"engine\": \"redis\", \"redis_url\": \"http://nope\"}", &down);
    EXPECT(r == CBX_INVALID_ARGUMENT && down == NULL);
    r = cbx_hub_new("{\"engine\": \"redis\", \"redis_urll\": \"x\"}", &down);
    EXPECT(r == CBX_INVALID_ARGUMENT);
    printf("ok\n");
    return 0;
}
"#;

#[test]
fn c_hosts_select_the_redis_engine_by_config() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if !have(&cc) {
        eprintln!("skipped: no C compiler ({cc})");
        return;
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("redis_engine.c");
    std::fs::write(&src, C_PROGRAM).unwrap();
    let exe = dir.path().join("redis_engine");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = lib_dir();
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg(format!("-I{}", root.join("include").display()))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lchannelbox")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // cargo's LD_LIBRARY_PATH may name an older copy in target/<profile>/
    // first; the program must load the library this run built.
    let run = Command::new(&exe)
        .arg(redis.url())
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

const PY_PROGRAM: &str = r#"
import sys
import channelbox

url = sys.argv[1]
a = channelbox.Hub(engine="redis", redis_url=url, node_name="py-a")
b = channelbox.Hub(engine="redis", redis_url=url, node_name="py-b")
ca, cb = a.open("alice"), b.open("bob")
ca.join("room")
cb.join("room")
report = a.group_send("room", {"text": "hi"}, save_history=True)
assert report.offset == 1, report
m = cb.recv(timeout=5)
assert (m.data, m.offset, m.group) == ({"text": "hi"}, 1, "room"), m
assert ca.recv(timeout=5).offset == 1
b.user_send("alice", "psst", kind="text")
assert ca.recv(timeout=5).text == "psst"
pa, pb = a.history("room"), b.history("room")
assert pa.epoch == pb.epoch and [x.offset for x in pb.messages] == [1]
assert a.stats()["engine_connected"] == 1
try:
    channelbox.Hub(engine="redis", redis_url="redis://127.0.0.1:1/", redis_timeout_ms=300)
except channelbox.EngineUnavailable:
    pass
else:
    raise AssertionError("an unreachable redis was accepted")
try:
    channelbox.Hub(engine="redis", redis_url="http://nope")
except channelbox.InvalidArgument:
    pass
else:
    raise AssertionError("a bad redis_url was accepted")
a.close()
b.close()
print("ok")
"#;

#[test]
fn python_hosts_select_the_redis_engine_by_config() {
    if !have("python3") {
        eprintln!("skipped: no python3");
        return;
    }
    let redis = RedisServer::start();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = Command::new("python3")
        .arg("-c")
        .arg(PY_PROGRAM)
        .arg(redis.url())
        .env("PYTHONPATH", root.join("bindings/python"))
        .env("CHANNELBOX_LIB", lib_dir().join("libchannelbox.so"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
