//! The browser client, embedded in the binary: `GET /` is `static/index.html`,
//! every other file of `static/` is served under `/static/`.
//!
//! The client is native ES modules with no build step: `index.html` loads
//! `/static/js/main.js`, which imports the rest by relative path, so each
//! module is one entry in [`CLIENT`]. The admin dashboard (issue 15) is a
//! second page, `GET /dashboard` (`static/dashboard.html`), with its own
//! entry module `/static/js/dashboard.js` and style sheet. The tests below fail when a file under
//! `static/`, or a module that an `import` names, is missing from the table.

/// `Content-Type` of the page.
const HTML: &str = "text/html; charset=utf-8";
/// `Content-Type` of the style sheet.
const CSS: &str = "text/css; charset=utf-8";
/// `Content-Type` of a module: browsers refuse to run a module served as anything else.
const JS: &str = "text/javascript; charset=utf-8";

/// `(URL path, content type, body)` of a file under `static/`, served at `/static/<file>`.
macro_rules! asset {
    ($file:literal, $content_type:expr) => {
        (
            concat!("/static/", $file),
            $content_type,
            include_str!(concat!("../static/", $file)),
        )
    };
}

/// Every file of the browser client: `(URL path, content type, body)`.
pub const CLIENT: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../static/index.html")),
    asset!("style.css", CSS),
    // Boot, the store and what every feature stands on.
    asset!("js/main.js", JS),
    asset!("js/state.js", JS),
    asset!("js/storage.js", JS),
    asset!("js/api.js", JS),
    asset!("js/socket.js", JS),
    asset!("js/identity.js", JS),
    // Signing in and out.
    asset!("js/auth.js", JS),
    asset!("js/session.js", JS),
    // What is on screen, and the features.
    asset!("js/views.js", JS),
    asset!("js/rooms.js", JS),
    asset!("js/room-details.js", JS),
    asset!("js/people-picker.js", JS),
    asset!("js/autocomplete.js", JS),
    asset!("js/chat.js", JS),
    asset!("js/messages.js", JS),
    asset!("js/updates.js", JS),
    asset!("js/message-list.js", JS),
    asset!("js/outbox.js", JS),
    asset!("js/composer.js", JS),
    asset!("js/edit.js", JS),
    asset!("js/typing.js", JS),
    asset!("js/reads.js", JS),
    asset!("js/threads.js", JS),
    asset!("js/search.js", JS),
    asset!("js/files.js", JS),
    asset!("js/mentions.js", JS),
    asset!("js/unread.js", JS),
    asset!("js/moderation.js", JS),
    asset!("js/presence.js", JS),
    asset!("js/dm.js", JS),
    // Page pieces with no chat logic.
    asset!("js/ui/dom.js", JS),
    asset!("js/ui/icons.js", JS),
    asset!("js/ui/avatar.js", JS),
    asset!("js/ui/dates.js", JS),
    asset!("js/ui/rich-text.js", JS),
    asset!("js/ui/toasts.js", JS),
    asset!("js/ui/status.js", JS),
    asset!("js/ui/popovers.js", JS),
    asset!("js/ui/dialogs.js", JS),
    // The admin dashboard (issue 15): its page, style and modules.
    ("/dashboard", HTML, include_str!("../static/dashboard.html")),
    asset!("dashboard.css", CSS),
    asset!("js/dashboard.js", JS),
    asset!("js/dashboard-chart.js", JS),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::CLIENT;

    /// The URL a file under `static/` is served at.
    fn url_of(relative: &str) -> String {
        if relative == "index.html" {
            "/".to_owned()
        } else if relative == "dashboard.html" {
            "/dashboard".to_owned()
        } else {
            format!("/static/{relative}")
        }
    }

    fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, out);
            } else {
                out.push(path);
            }
        }
    }

    /// `(relative path, text)` of every file under `static/`.
    fn static_files() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
        let mut paths = Vec::new();
        files_under(&root, &mut paths);
        paths.sort();
        paths
            .into_iter()
            .map(|path| {
                let relative = path.strip_prefix(&root).unwrap().to_str().unwrap();
                let relative = relative.replace(std::path::MAIN_SEPARATOR, "/");
                (relative, std::fs::read_to_string(&path).unwrap())
            })
            .collect()
    }

    /// The specifiers of a module's static imports and re-exports: each
    /// statement starts a line with `import` (or `export … from`) and may run
    /// over several lines up to its `;`; the specifier is its last string.
    fn import_specifiers(source: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut lines = source.lines();
        while let Some(line) = lines.next() {
            let line = line.trim_start();
            let import = ["import ", "import{", "import'", "import\""]
                .iter()
                .any(|p| line.starts_with(p));
            let reexport = line.starts_with("export {") || line.starts_with("export *");
            if !import && !reexport {
                continue;
            }
            let mut statement = line.to_owned();
            while !statement.contains(';') {
                match lines.next() {
                    Some(more) => statement.push_str(more),
                    None => break,
                }
            }
            if reexport && !statement.contains(" from ") {
                continue;
            }
            let quoted: Vec<&str> = statement.split(['\'', '"']).collect();
            if quoted.len() >= 3 {
                found.push(quoted[quoted.len() - 2].to_owned());
            }
        }
        found
    }

    /// `spec` as an absolute URL path, from the module served at `from`.
    fn resolve(from: &str, spec: &str) -> String {
        let mut parts: Vec<&str> = if spec.starts_with('/') {
            Vec::new()
        } else {
            let mut base: Vec<&str> = from.split('/').filter(|p| !p.is_empty()).collect();
            base.pop();
            base
        };
        for part in spec.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                part => parts.push(part),
            }
        }
        format!("/{}", parts.join("/"))
    }

    #[test]
    fn every_static_file_is_served_as_it_is_on_disk() {
        let files = static_files();
        assert!(files.iter().any(|(path, _)| path == "js/main.js"));
        for (relative, text) in &files {
            let url = url_of(relative);
            let entry = CLIENT.iter().find(|(path, _, _)| *path == url);
            let Some((_, _, body)) = entry else {
                panic!("static/{relative} is not in assets::CLIENT (add it as {url})");
            };
            assert!(*body == text, "{url} does not serve static/{relative}");
        }
        let paths: BTreeSet<&str> = CLIENT.iter().map(|(path, _, _)| *path).collect();
        assert_eq!(
            paths.len(),
            CLIENT.len(),
            "assets::CLIENT has an entry twice"
        );
    }

    #[test]
    fn modules_are_served_as_javascript() {
        for (path, content_type, _) in CLIENT {
            if path.ends_with(".js") {
                assert!(
                    content_type.starts_with("text/javascript"),
                    "{path} is served as {content_type}"
                );
            }
        }
    }

    #[test]
    fn every_imported_module_is_in_the_table() {
        let served: BTreeSet<&str> = CLIENT.iter().map(|(path, _, _)| *path).collect();
        let mut imports = 0;
        for (path, _, body) in CLIENT.iter().filter(|(path, _, _)| path.ends_with(".js")) {
            for spec in import_specifiers(body) {
                let target = resolve(path, &spec);
                assert!(
                    served.contains(target.as_str()),
                    "{path} imports '{spec}', but {target} is not in assets::CLIENT"
                );
                imports += 1;
            }
        }
        assert!(imports > 0, "no imports found: the scan is broken");
    }

    #[test]
    fn the_page_loads_the_entry_module_and_the_style_sheet() {
        let (_, _, page) = CLIENT.iter().find(|(path, _, _)| *path == "/").unwrap();
        for needed in [
            r#"<script type="module" src="/static/js/main.js">"#,
            r#"<link rel="stylesheet" href="/static/style.css">"#,
        ] {
            assert!(page.contains(needed), "index.html lacks {needed}");
        }
    }

    #[test]
    fn the_dashboard_loads_its_module_and_style_sheet() {
        let (_, content_type, page) = CLIENT
            .iter()
            .find(|(path, _, _)| *path == "/dashboard")
            .unwrap();
        assert!(content_type.starts_with("text/html"));
        for needed in [
            r#"<script type="module" src="/static/js/dashboard.js">"#,
            r#"<link rel="stylesheet" href="/static/dashboard.css">"#,
        ] {
            assert!(page.contains(needed), "dashboard.html lacks {needed}");
        }
    }

    #[test]
    fn the_import_scan_reads_the_forms_modules_use() {
        let source = "import { a, b } from './x.js';\nimport {\n  c,\n} from \"../y.js\";\nimport './z.js';\nexport { d } from './w.js';\nexport { e };\nconst t = { kick: 'kicked from', ban: 'banned from' };\n";
        assert_eq!(
            import_specifiers(source),
            ["./x.js", "../y.js", "./z.js", "./w.js"]
        );
        assert_eq!(
            resolve("/static/js/ui/dom.js", "../state.js"),
            "/static/js/state.js"
        );
        assert_eq!(
            resolve("/static/js/main.js", "./ui/dom.js"),
            "/static/js/ui/dom.js"
        );
    }
}
