//! Presence by user: which people are in a group, however many connections
//! each has open.

use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Connection counts per user in one group.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    counts: FxHashMap<Arc<str>, u32>,
}

impl Presence {
    /// Counts one more connection of `user`; true when it is the first.
    pub(crate) fn add(&mut self, user: &Arc<str>) -> bool {
        let n = self.counts.entry(user.clone()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Counts one connection fewer; true when it was the user's last.
    pub(crate) fn remove(&mut self, user: &str) -> bool {
        match self.counts.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.counts.remove(user);
                true
            }
            None => false,
        }
    }

    /// The distinct users, sorted.
    pub(crate) fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.counts.keys().map(|u| u.to_string()).collect();
        users.sort_unstable();
        users
    }

    /// True when `user` has at least one connection here.
    pub(crate) fn contains(&self, user: &str) -> bool {
        self.counts.contains_key(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_with_three_connections_counts_once() {
        let mut p = Presence::default();
        let alice: Arc<str> = "alice".into();
        assert!(p.add(&alice));
        assert!(!p.add(&alice));
        assert!(!p.add(&alice));
        assert_eq!(p.users(), vec!["alice"]);
        assert!(!p.remove("alice"));
        assert!(!p.remove("alice"));
        assert!(p.remove("alice"));
        assert!(p.users().is_empty());
    }
}
