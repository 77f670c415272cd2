//! Who is in which room, counted for the caps a join is checked against:
//! `--max-rooms-joined-per-user` (distinct rooms a user has sockets in)
//! and `--max-room-members` (distinct users connected to one room). A
//! user's further sockets in a room they are already in are never refused
//! by these caps.

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

#[derive(Debug, Default)]
struct Counts {
    /// user id -> room -> their open sockets in it.
    by_user: FxHashMap<String, FxHashMap<String, usize>>,
    /// room -> distinct users with a socket in it.
    users_in: FxHashMap<String, usize>,
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
        if rooms.is_some_and(|r| r.contains_key(room)) {
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
    pub fn joined(&self, room: &str, sub: &str) {
        let mut counts = self.0.lock();
        let sockets = counts
            .by_user
            .entry(sub.to_owned())
            .or_default()
            .entry(room.to_owned())
            .or_default();
        *sockets += 1;
        if *sockets == 1 {
            *counts.users_in.entry(room.to_owned()).or_default() += 1;
        }
    }

    /// `sub` closed a socket in `room` (one [`Occupancy::joined`] earlier);
    /// true when nobody is left in the room.
    pub fn left(&self, room: &str, sub: &str) -> bool {
        let mut counts = self.0.lock();
        let Some(rooms) = counts.by_user.get_mut(sub) else {
            return false;
        };
        let Some(sockets) = rooms.get_mut(room) else {
            return false;
        };
        *sockets -= 1;
        if *sockets > 0 {
            return false;
        }
        rooms.remove(room);
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
        o.joined("a", "u");
        o.joined("a", "u");
        assert_eq!(o.check("b", "u", 1, 10), Err(Full::UserInTooManyRooms));
        assert_eq!(o.check("a", "u", 1, 10), Ok(()));
        assert_eq!(o.check("a", "v", 10, 1), Err(Full::RoomFull));
        assert_eq!((o.users_in("a"), o.users_in("b")), (1, 0));
        o.left("a", "u");
        assert_eq!(o.check("b", "u", 1, 10), Err(Full::UserInTooManyRooms));
        o.left("a", "u");
        assert_eq!(o.check("b", "u", 1, 10), Ok(()));
        assert_eq!(o.check("a", "v", 10, 1), Ok(()));
    }
}
