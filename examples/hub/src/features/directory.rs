//! Who the hub has seen (from verified tokens): usernames for mentions,
//! and the admin role for permission checks on users who are not
//! connected right now.

use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};

/// A user as the hub last saw their token.
#[derive(Debug, Clone)]
struct Known {
    username: String,
    admin: bool,
}

/// The users seen so far.
#[derive(Debug, Default)]
struct Users {
    by_sub: FxHashMap<String, Known>,
    /// Lowercased username and sub -> subs.
    by_name: FxHashMap<String, FxHashSet<String>>,
}

/// Who has been seen, by user id and by name.
#[derive(Debug, Default)]
pub struct Directory {
    users: Mutex<Users>,
}

impl Directory {
    /// Remembers who `sub` is (from a verified token).
    pub fn saw(&self, sub: &str, username: &str, admin: bool) {
        let mut users = self.users.lock();
        if let Some(k) = users.by_sub.get(sub) {
            if k.username == username && k.admin == admin {
                return;
            }
            let old = k.username.to_lowercase();
            if let Some(set) = users.by_name.get_mut(&old) {
                set.remove(sub);
            }
        }
        users.by_sub.insert(
            sub.to_owned(),
            Known {
                username: username.to_owned(),
                admin,
            },
        );
        for name in [username.to_lowercase(), sub.to_lowercase()] {
            users
                .by_name
                .entry(name)
                .or_default()
                .insert(sub.to_owned());
        }
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
