//! Who the hub has seen (from verified tokens): usernames for mentions,
//! the admin role for permission checks on users who are not connected
//! right now, and `GET /users?q=` for the client's people picker (room
//! members are added by id: the picker offers ids that exist).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;

use crate::auth::Claims;
use crate::server::AppState;

/// Most users one `GET /users` answers with.
const MAX_LISTED: usize = 20;

/// A user as the hub last saw their token.
#[derive(Debug, Clone)]
struct Known {
    username: String,
    admin: bool,
    /// When last seen, in [`Users::clock`] ticks (the least recent go first).
    seen: u64,
}

/// The users seen so far.
#[derive(Debug, Default)]
struct Users {
    by_sub: FxHashMap<String, Known>,
    /// Lowercased username and sub -> subs.
    by_name: FxHashMap<String, FxHashSet<String>>,
    /// Counts sightings.
    clock: u64,
}

impl Users {
    /// Forgets `sub` and its names.
    fn forget(&mut self, sub: &str) {
        if let Some(k) = self.by_sub.remove(sub) {
            for name in [k.username.to_lowercase(), sub.to_lowercase()] {
                if let Some(set) = self.by_name.get_mut(&name) {
                    set.remove(sub);
                    if set.is_empty() {
                        self.by_name.remove(&name);
                    }
                }
            }
        }
    }

    /// Forgets the least recently seen eighth (at least one) when over `max`.
    fn bound(&mut self, max: usize) {
        if self.by_sub.len() <= max.max(1) {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self
            .by_sub
            .iter()
            .map(|(sub, k)| (k.seen, sub.clone()))
            .collect();
        by_age.sort_unstable();
        let excess = self.by_sub.len() - max.max(1);
        let drop = excess.max(max / 8).min(by_age.len());
        for (_, sub) in by_age.into_iter().take(drop) {
            self.forget(&sub);
        }
    }
}

/// Who has been seen, by user id and by name.
#[derive(Debug, Default)]
pub struct Directory {
    users: Mutex<Users>,
}

impl Directory {
    /// Remembers who `sub` is (from a verified token); at most `max` users
    /// are kept (`--max-remembered-users`), the least recently seen go.
    pub fn saw(&self, sub: &str, username: &str, admin: bool, max: usize) {
        let mut users = self.users.lock();
        users.clock += 1;
        let now = users.clock;
        if let Some(k) = users.by_sub.get_mut(sub) {
            k.seen = now;
            if k.username == username && k.admin == admin {
                return;
            }
        }
        users.forget(sub);
        users.by_sub.insert(
            sub.to_owned(),
            Known {
                username: username.to_owned(),
                admin,
                seen: now,
            },
        );
        for name in [username.to_lowercase(), sub.to_lowercase()] {
            users
                .by_name
                .entry(name)
                .or_default()
                .insert(sub.to_owned());
        }
        users.bound(max);
    }

    /// Users remembered now.
    pub fn len(&self) -> usize {
        self.users.lock().by_sub.len()
    }

    /// True when no user is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `sub` was last seen with the admin role.
    pub fn is_admin(&self, sub: &str) -> bool {
        self.users.lock().by_sub.get(sub).is_some_and(|k| k.admin)
    }

    /// The subs known by each lowercased name (sorted per name), and the
    /// names nobody is known by.
    pub fn lookup<'n>(&self, names: &'n [String]) -> (Vec<String>, Vec<&'n str>) {
        let users = self.users.lock();
        let mut subs = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match users.by_name.get(name) {
                Some(set) if !set.is_empty() => {
                    let mut set: Vec<&String> = set.iter().collect();
                    set.sort();
                    subs.extend(set.into_iter().cloned());
                }
                _ => unknown.push(name.as_str()),
            }
        }
        (subs, unknown)
    }
}

impl Directory {
    /// Up to `limit` users whose id or display name contains `query`
    /// (case-insensitive): those whose name or id starts with it first,
    /// then the most recently seen. `(sub, username)` pairs.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(String, String)> {
        let query = query.trim().to_lowercase();
        let users = self.users.lock();
        let mut found: Vec<(bool, u64, &String, &Known)> = users
            .by_sub
            .iter()
            .filter_map(|(sub, k)| {
                let (name, id) = (k.username.to_lowercase(), sub.to_lowercase());
                if !name.contains(&query) && !id.contains(&query) {
                    return None;
                }
                let prefix = name.starts_with(&query) || id.starts_with(&query);
                Some((!prefix, u64::MAX - k.seen, sub, k))
            })
            .collect();
        found.sort_unstable_by_key(|a| (a.0, a.1));
        found
            .into_iter()
            .take(limit)
            .map(|(_, _, sub, k)| (sub.clone(), k.username.clone()))
            .collect()
    }
}

/// `GET /users`'s query.
#[derive(Debug, Deserialize)]
struct UsersQuery {
    #[serde(default)]
    q: String,
}

/// `GET /users?q=`: `{"users":[{"id","username"}]}`, the known users whose
/// id or name contains `q` (at most 20). Signed-in callers only.
async fn list(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Query(query): Query<UsersQuery>,
) -> Response {
    let directory = &state.features.directory;
    // The caller is a user the hub has seen, even before joining a room.
    directory.saw(
        &claims.sub,
        &claims.username,
        claims.is_admin(),
        state.config.max_remembered_users,
    );
    let q: String = query.q.chars().take(100).collect();
    let users: Vec<serde_json::Value> = directory
        .search(&q, MAX_LISTED)
        .into_iter()
        .map(|(id, username)| serde_json::json!({"id": id, "username": username}))
        .collect();
    Json(serde_json::json!({ "users": users })).into_response()
}

/// `/users`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/users", get(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_seen_are_forgotten_over_the_cap() {
        let d = Directory::default();
        for i in 0..10 {
            d.saw(&format!("u{i}"), &format!("name{i}"), false, 10);
        }
        // u0 is seen again: u1 is now the least recent.
        d.saw("u0", "name0", true, 10);
        d.saw("u10", "name10", false, 10);
        assert_eq!(d.len(), 10);
        assert!(d.is_admin("u0"));
        let names = ["name1".to_string(), "name0".to_string()];
        let (subs, unknown) = d.lookup(&names);
        assert_eq!(subs, vec!["u0".to_string()]);
        assert_eq!(unknown, vec!["name1"]);
    }

    #[test]
    fn a_new_name_replaces_the_old_one() {
        let d = Directory::default();
        d.saw("u", "old", false, 10);
        d.saw("u", "new", false, 10);
        let names = ["new".to_string(), "old".to_string()];
        let (subs, unknown) = d.lookup(&names);
        assert_eq!((subs, unknown), (vec!["u".to_string()], vec!["old"]));
    }

    #[test]
    fn search_matches_names_and_ids_prefixes_first() {
        let d = Directory::default();
        d.saw("guest-bob-1", "bob", false, 10);
        d.saw("u-rob", "Robert", false, 10);
        d.saw("alice", "Alice", false, 10);
        let ids =
            |q: &str| -> Vec<String> { d.search(q, 10).into_iter().map(|(s, _)| s).collect() };
        assert_eq!(ids("BOB"), vec!["guest-bob-1".to_string()]);
        // "rob" starts Robert's name and is in neither of the others.
        assert_eq!(ids("rob"), vec!["u-rob".to_string()]);
        // Inside both names, at the start of neither: the most recent first.
        assert_eq!(
            ids("o"),
            vec!["u-rob".to_string(), "guest-bob-1".to_string()]
        );
        assert_eq!(ids("nobody"), Vec::<String>::new());
        // An empty query lists the most recently seen first.
        assert_eq!(ids("")[0], "alice");
        assert_eq!(d.search("", 2).len(), 2);
    }
}
