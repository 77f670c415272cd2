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
    /// The same `Arc` as the user id when the name is the id.
    username: Arc<str>,
    admin: bool,
    /// When last seen, in [`Users::clock`] ticks (the least recent go first).
    seen: u64,
}

/// The users one lowercased name stands for: nearly always one, kept
/// inline (a set of its own per name cost a table allocation a user).
#[derive(Debug)]
enum Subs {
    One(Arc<str>),
    Many(FxHashSet<Arc<str>>),
}

impl Subs {
    fn insert(&mut self, sub: &Arc<str>) {
        match self {
            Subs::One(one) if one == sub => {}
            Subs::One(one) => {
                let set = [one.clone(), sub.clone()].into_iter().collect();
                *self = Subs::Many(set);
            }
            Subs::Many(set) => {
                set.insert(sub.clone());
            }
        }
    }

    /// Removes `sub`; true when none is left.
    fn remove(&mut self, sub: &str) -> bool {
        match self {
            Subs::One(one) => &**one == sub,
            Subs::Many(set) => {
                set.remove(sub);
                set.is_empty()
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        let (one, many) = match self {
            Subs::One(one) => (Some(one), None),
            Subs::Many(set) => (None, Some(set)),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// The users seen so far. Every string of a user is one `Arc<str>` shared
/// by the maps (the id; the name, and the lowercased keys, share it when
/// they are equal): one or two allocations a user instead of about nine
/// (issue 14 item 3).
#[derive(Debug, Default)]
struct Users {
    by_sub: FxHashMap<Arc<str>, Known>,
    /// Lowercased username and sub -> subs.
    by_name: FxHashMap<Arc<str>, Subs>,
    /// Counts sightings.
    clock: u64,
}

/// `text` lowercased, as one of `same` when equal to it (no allocation).
fn lowered(text: &str, same: [&Arc<str>; 2]) -> Arc<str> {
    let lower = text.to_lowercase();
    match same.into_iter().find(|s| ***s == *lower) {
        Some(s) => s.clone(),
        None => lower.into(),
    }
}

impl Users {
    /// Forgets `sub` and its names.
    fn forget(&mut self, sub: &str) {
        if let Some(k) = self.by_sub.remove(sub) {
            for name in [k.username.to_lowercase(), sub.to_lowercase()] {
                if let Some(subs) = self.by_name.get_mut(name.as_str()) {
                    if subs.remove(sub) {
                        self.by_name.remove(name.as_str());
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
        let mut by_age: Vec<(u64, Arc<str>)> = self
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
            if &*k.username == username && k.admin == admin {
                return;
            }
        }
        users.forget(sub);
        let sub: Arc<str> = sub.into();
        let username: Arc<str> = match username == &*sub {
            true => sub.clone(),
            false => username.into(),
        };
        for name in [
            lowered(&username, [&username, &sub]),
            lowered(&sub, [&username, &sub]),
        ] {
            match users.by_name.get_mut(&name) {
                Some(subs) => subs.insert(&sub),
                None => {
                    users.by_name.insert(name, Subs::One(sub.clone()));
                }
            }
        }
        users.by_sub.insert(
            sub,
            Known {
                username,
                admin,
                seen: now,
            },
        );
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

    /// The directory's own `Arc<str>` of user id `sub`, if it knows the
    /// user: others who keep the id share it instead of a copy.
    pub fn shared_id(&self, sub: &str) -> Option<Arc<str>> {
        let users = self.users.lock();
        users.by_sub.get_key_value(sub).map(|(id, _)| id.clone())
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
            match users.by_name.get(name.as_str()) {
                Some(set) => {
                    let mut set: Vec<&Arc<str>> = set.iter().collect();
                    set.sort();
                    subs.extend(set.into_iter().map(|s| s.to_string()));
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
        let mut found: Vec<(bool, u64, &Arc<str>, &Known)> = users
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
            .map(|(_, _, sub, k)| (sub.to_string(), k.username.to_string()))
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
    fn names_shared_by_users_and_ids_equal_to_names() {
        let d = Directory::default();
        d.saw("bob", "bob", false, 10);
        d.saw("u2", "Bob", false, 10);
        d.saw("u3", "BOB", true, 10);
        let names = ["bob".to_string(), "u2".to_string(), "nobody".to_string()];
        let (subs, unknown) = d.lookup(&names);
        assert_eq!(subs, ["bob", "u2", "u3", "u2"]);
        assert_eq!(unknown, ["nobody"]);
        // Forgotten one by one, the shared name goes with the last.
        d.saw("u2", "robert", false, 10);
        d.saw("u3", "rob", false, 10);
        let (subs, _) = d.lookup(&names);
        assert_eq!(subs, ["bob", "u2"]);
        d.saw("bob", "b", false, 10);
        let names = ["bob".to_string(), "b".to_string(), "u3".to_string()];
        let (subs, unknown) = d.lookup(&names);
        assert_eq!(subs, ["bob", "bob", "u3"]);
        assert!(unknown.is_empty());
        assert!(!d.is_admin("u3"));
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
