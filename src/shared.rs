//! A reference-counted pointer whose count can be raised by many at once.
//!
//! `std::sync::Arc` raises its count one clone at a time, a locked
//! instruction each. A broadcast hands the same message to every member's
//! queue, so with `Arc` each delivery pays that instruction (on x86 about as
//! much as the queue's lock itself). [`Shared::reserve`] raises the count by
//! the number of members once, and [`Reserved::take`] then hands out
//! references without touching the count; what is left unused goes back in
//! one decrement. Everything else is `Arc`'s contract: clones share one
//! value, the last reference to go drops it, and [`Shared::into_raw`] /
//! [`Shared::from_raw`] pass one reference through a raw pointer to the
//! value (the C ABI's message handle).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};

/// Counts above this abort, as `Arc` does, so the count never wraps.
const MAX_REFS: usize = isize::MAX as usize;

#[repr(C)]
struct Inner<T> {
    refs: AtomicUsize,
    value: T,
}

/// A shared `T`, like `Arc<T>` without weak references.
pub(crate) struct Shared<T> {
    ptr: NonNull<Inner<T>>,
    _owns: PhantomData<Inner<T>>,
}

// SAFETY: as for `Arc<T>`: the value is shared between threads (Sync) and
// dropped on whichever thread lets go last (Send).
unsafe impl<T: Send + Sync> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Shared<T> {}

impl<T> Shared<T> {
    pub(crate) fn new(value: T) -> Shared<T> {
        let inner = Box::new(Inner {
            refs: AtomicUsize::new(1),
            value,
        });
        Shared {
            ptr: NonNull::from(Box::leak(inner)),
            _owns: PhantomData,
        }
    }

    fn inner(&self) -> &Inner<T> {
        // SAFETY: the allocation lives while any reference does, and `self`
        // is one.
        unsafe { self.ptr.as_ref() }
    }

    /// Adds `n` references at once, handed out by [`Reserved::take`];
    /// those not taken are given back when the `Reserved` drops.
    #[inline]
    pub(crate) fn reserve(&self, n: usize) -> Reserved<'_, T> {
        if n > 0 && self.inner().refs.fetch_add(n, Ordering::Relaxed) > MAX_REFS - n {
            std::process::abort();
        }
        Reserved {
            shared: self,
            left: n,
        }
    }

    pub(crate) fn ptr_eq(a: &Shared<T>, b: &Shared<T>) -> bool {
        a.ptr == b.ptr
    }

    /// The number of references (for tests).
    #[cfg(test)]
    fn count(&self) -> usize {
        self.inner().refs.load(Ordering::Acquire)
    }

    /// Hands one reference out as a pointer to the value.
    pub(crate) fn into_raw(this: Shared<T>) -> *const T {
        let value = &this.inner().value as *const T;
        std::mem::forget(this);
        value
    }

    /// Takes back a reference that [`Shared::into_raw`] handed out.
    ///
    /// # Safety
    /// `value` came from `into_raw` of a `Shared<T>` and that reference is
    /// not used again.
    pub(crate) unsafe fn from_raw(value: *const T) -> Shared<T> {
        let offset = std::mem::offset_of!(Inner<T>, value);
        // SAFETY: `value` points `offset` bytes into its `Inner` (repr(C)),
        // per the caller's contract.
        let inner = unsafe { value.cast::<u8>().sub(offset) }.cast::<Inner<T>>();
        Shared {
            // SAFETY: derived from a non-null allocation.
            ptr: unsafe { NonNull::new_unchecked(inner.cast_mut()) },
            _owns: PhantomData,
        }
    }
}

impl<T> Shared<T> {
    /// Takes back `refs` references that [`Shared::into_raw`] handed out
    /// for one value and drops them with one decrement (a host freeing a
    /// batch in which a broadcast sits many times).
    ///
    /// # Safety
    /// `value` came from `into_raw` at least `refs` times and none of
    /// those references is used again.
    pub(crate) unsafe fn drop_raw(value: *const T, refs: usize) {
        if refs == 0 {
            return;
        }
        // SAFETY: one of the references, per the caller's contract; the
        // others are given up by the same decrement.
        let mut this = std::mem::ManuallyDrop::new(unsafe { Shared::from_raw(value) });
        if this.inner().refs.fetch_sub(refs, Ordering::Release) != refs {
            return;
        }
        fence(Ordering::Acquire);
        this.drop_slow();
    }
}

impl<T> Clone for Shared<T> {
    #[inline]
    fn clone(&self) -> Shared<T> {
        if self.inner().refs.fetch_add(1, Ordering::Relaxed) > MAX_REFS {
            std::process::abort();
        }
        Shared {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Shared<T> {
    #[inline]
    fn drop(&mut self) {
        // Release, then Acquire before freeing: every other holder's use
        // of the value happens before it is dropped (as in `Arc`).
        if self.inner().refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        self.drop_slow();
    }
}

impl<T> Shared<T> {
    /// Frees the value once the last reference is gone; out of line so
    /// that a drop that is not the last stays a few instructions.
    #[inline(never)]
    fn drop_slow(&mut self) {
        // SAFETY: the last reference is going; the allocation came from
        // `Box::leak` in `new`.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner().value
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// References added by [`Shared::reserve`] and not yet handed out.
pub(crate) struct Reserved<'a, T> {
    shared: &'a Shared<T>,
    left: usize,
}

impl<T> Reserved<'_, T> {
    /// One of the reserved references, without touching the count.
    /// Panics when none is left (a caller reserves what it hands out).
    #[inline]
    pub(crate) fn take(&mut self) -> Shared<T> {
        assert!(self.left > 0, "took more references than reserved");
        self.left -= 1;
        Shared {
            ptr: self.shared.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for Reserved<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.left > 0 {
            // Never the last reference: `shared` is still held.
            self.shared
                .inner()
                .refs
                .fetch_sub(self.left, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts its drops.
    struct Tracked(Arc<AtomicUsize>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn reserved_references_count_like_clones() {
        let drops = Arc::new(AtomicUsize::new(0));
        let s = Shared::new(Tracked(drops.clone()));
        let mut taken = Vec::new();
        {
            let mut r = s.reserve(10);
            assert_eq!(s.count(), 11);
            for _ in 0..7 {
                taken.push(r.take());
            }
        }
        // The three not taken went back.
        assert_eq!(s.count(), 8);
        assert!(taken.iter().all(|t| Shared::ptr_eq(t, &s)));
        drop(s);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        taken.truncate(1);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        taken.clear();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn raw_round_trip_and_threads() {
        let drops = Arc::new(AtomicUsize::new(0));
        let s = Shared::new(Tracked(drops.clone()));
        let raw = Shared::into_raw(s.clone());
        // SAFETY: from into_raw, used once.
        let back = unsafe { Shared::from_raw(raw) };
        assert!(Shared::ptr_eq(&back, &s));
        let handles: Vec<_> = {
            let mut r = s.reserve(4);
            (0..4)
                .map(|_| {
                    let mine = r.take();
                    std::thread::spawn(move || drop(mine))
                })
                .collect()
        };
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.count(), 2);
        drop(back);
        drop(s);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn raw_references_dropped_together_free_the_value_once_with_the_last() {
        let drops = Arc::new(AtomicUsize::new(0));
        let s = Shared::new(Tracked(drops.clone()));
        let raw: Vec<*const Tracked> = (0..5).map(|_| Shared::into_raw(s.clone())).collect();
        // SAFETY: three of the five raw references, each used once.
        unsafe { Shared::drop_raw(raw[0], 3) };
        assert_eq!(s.count(), 3);
        // SAFETY: none given back.
        unsafe { Shared::drop_raw(raw[0], 0) };
        drop(s);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        // SAFETY: the last two.
        unsafe { Shared::drop_raw(raw[3], 2) };
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    #[should_panic(expected = "took more references than reserved")]
    fn taking_more_than_reserved_panics() {
        let s = Shared::new(1u8);
        let mut r = s.reserve(1);
        let _a = r.take();
        let _b = r.take();
    }
}
