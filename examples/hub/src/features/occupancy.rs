//! Who is in which room, counted for the caps a join is checked against:
//! `--max-rooms-joined-per-user` (distinct rooms a user has sockets in)
//! and `--max-room-members` (distinct users connected to one room). A
//! user's further sockets in a room they are already in are never refused
//! by these caps.

use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// Counts kept per connected user and room. Keys are the `Arc<str>`s the
/// session already holds (the user's slot, the endpoint's room), so a
/// socket adds no string of its own; a user's rooms are a short list (most
/// users are in one or a few: a vector, not a map of its own per user).
/// About 80 bytes a user instead of ~270 (issue 14 item 3).
#[derive(Debug, Default)]
struct Counts {
    /// user id -> (room, their open sockets in it).
    by_user: FxHashMap<Arc<str>, Vec<(Arc<str>, u32)>>,
    /// room -> distinct users with a socket in it.
    users_in: FxHashMap<Arc<str>, usize>,
}

/// Open `/chat` sockets by user and room (this hub's only).
#[derive(Debug, Default)]
pub struct Occupancy(Mutex<Counts>);

/// Why a join was refused by a cap.
#[derive(Debug, PartialEq, Eq)]
pub enum Full {
    /// The user is in `--max-rooms-joined-per-user` rooms already.
    UserInTooManyRooms,
    /// The room has `--max-room-members` users connected.
    RoomFull,
}

impl Occupancy {
    /// May `sub` open a socket in `room`? (Checked before the upgrade;
    /// a few joins racing past a cap at once overshoot it by as many.)
    pub fn check(
        &self,
        room: &str,
        sub: &str,
        max_rooms: usize,
        max_users: usize,
    ) -> Result<(), Full> {
        let counts = self.0.lock();
        let rooms = counts.by_user.get(sub);
        if rooms.is_some_and(|r| r.iter().any(|(r, _)| &**r == room)) {
            return Ok(());
        }
        if rooms.map_or(0, |r| r.len()) >= max_rooms {
            return Err(Full::UserInTooManyRooms);
        }
        if counts.users_in.get(room).copied().unwrap_or(0) >= max_users {
            return Err(Full::RoomFull);
        }
        Ok(())
    }

    /// Distinct users with a socket in `room` on this hub.
    pub fn users_in(&self, room: &str) -> usize {
        self.0.lock().users_in.get(room).copied().unwrap_or(0)
    }

    /// `sub` opened a socket in `room`.
    pub fn joined(&self, room: &Arc<str>, sub: &Arc<str>) {
        let mut counts = self.0.lock();
        let rooms = match counts.by_user.get_mut(&**sub) {
            Some(rooms) => rooms,
            None => counts
                .by_user
                .entry(sub.clone())
                .or_insert_with(|| Vec::with_capacity(1)),
        };
        if let Some((_, sockets)) = rooms.iter_mut().find(|(r, _)| r == room) {
            *sockets += 1;
            return;
        }
        rooms.push((room.clone(), 1));
        match counts.users_in.get_mut(&**room) {
            Some(n) => *n += 1,
            None => {
                counts.users_in.insert(room.clone(), 1);
            }
        }
    }

    /// `sub` closed a socket in `room` (one [`Occupancy::joined`] earlier);
    /// true when nobody is left in the room.
    pub fn left(&self, room: &str, sub: &str) -> bool {
        let mut counts = self.0.lock();
        let Some(rooms) = counts.by_user.get_mut(sub) else {
            return false;
        };
        let Some(at) = rooms.iter().position(|(r, _)| &**r == room) else {
            return false;
        };
        rooms[at].1 -= 1;
        if rooms[at].1 > 0 {
            return false;
        }
        rooms.swap_remove(at);
        if rooms.is_empty() {
            counts.by_user.remove(sub);
        }
        if let Some(n) = counts.users_in.get_mut(room) {
            *n -= 1;
            if *n == 0 {
                counts.users_in.remove(room);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_distinct_rooms_and_users_and_forget_on_leave() {
        let o = Occupancy::default();
        let (a, u): (Arc<str>, Arc<str>) = ("a".into(), "u".into());
        o.joined(&a, &u);
        o.joined(&a, &u);
        assert_eq!(o.check("b", "u", 1, 10), Err(Full::UserInTooManyRooms));
        assert_eq!(o.check("a", "u", 1, 10), Ok(()));
        assert_eq!(o.check("a", "v", 10, 1), Err(Full::RoomFull));
        assert_eq!((o.users_in("a"), o.users_in("b")), (1, 0));
        o.left("a", "u");
        assert_eq!(o.check("b", "u", 1, 10), Err(Full::UserInTooManyRooms));
        o.left("a", "u");
        assert_eq!(o.check("b", "u", 1, 10), Ok(()));
        assert_eq!(o.check("a", "v", 10, 1), Ok(()));
        // Two rooms, two users: the last one out of a room says so.
        let (b, v): (Arc<str>, Arc<str>) = ("b".into(), "v".into());
        o.joined(&a, &u);
        o.joined(&b, &u);
        o.joined(&a, &v);
        assert_eq!((o.users_in("a"), o.users_in("b")), (2, 1));
        assert_eq!(o.check("c", "u", 2, 10), Err(Full::UserInTooManyRooms));
        assert_eq!(o.check("c", "v", 2, 10), Ok(()));
        assert!(!o.left("a", "u"));
        assert!(!o.left("c", "u"));
        assert!(o.left("a", "v"));
        assert!(o.left("b", "u"));
        assert_eq!((o.users_in("a"), o.users_in("b")), (0, 0));
        assert_eq!(o.check("c", "u", 1, 10), Ok(()));
    }
}
