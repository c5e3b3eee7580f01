//! `ngx.shared.DICT` stores: byte-capacity key/value dictionaries shared by all workers, with
//! TTLs, user flags, lists and LRU eviction, answering as lua-nginx-module does. Pure Rust and
//! thread-safe: scripts reach them through `api/shdict.rs`, hosts through `Engine::shared_dict`.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

/// What one entry costs beyond its key and value bytes, like nginx's node and slab overhead.
pub const ENTRY_OVERHEAD: usize = 64;
/// What one list element costs beyond its bytes.
const LIST_ITEM_OVERHEAD: usize = 16;
/// The longest key lua-nginx-module accepts.
pub const MAX_KEY_LEN: usize = 65535;

/// A scalar a dict stores.
#[derive(Clone, Debug, PartialEq)]
pub enum DictValue {
    Boolean(bool),
    Number(f64),
    String(Vec<u8>),
}

impl DictValue {
    fn size(&self) -> usize {
        match self {
            DictValue::Boolean(_) => 1,
            DictValue::Number(_) => 8,
            DictValue::String(bytes) => bytes.len(),
        }
    }
}

/// The failures lua-nginx-module reports as a second result; `Display` gives its strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DictError {
    NotFound,
    Exists,
    NotANumber,
    NoMemory,
    NotAList,
    IsAList,
    NilKey,
    EmptyKey,
    KeyTooLong,
    BadValueType,
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DictError::NotFound => "not found",
            DictError::Exists => "exists",
            DictError::NotANumber => "not a number",
            DictError::NoMemory => "no memory",
            DictError::NotAList => "value not a list",
            DictError::IsAList => "value is a list",
            DictError::NilKey => "nil key",
            DictError::EmptyKey => "empty key",
            DictError::KeyTooLong => "key too long",
            DictError::BadValueType => "bad value type",
        })
    }
}

impl std::error::Error for DictError {}

/// How a store treats an existing key and a full dict: the set/add/replace family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// `set`: always stores, evicting least recently used entries when full.
    Set,
    /// `safe_set`: like set, but answers "no memory" rather than evicting live entries.
    SafeSet,
    /// `add`: only if the key is absent (or expired).
    Add,
    /// `safe_add`: add without evicting live entries.
    SafeAdd,
    /// `replace`: only if the key is present.
    Replace,
}

impl StoreMode {
    fn may_evict(self) -> bool {
        !matches!(self, StoreMode::SafeSet | StoreMode::SafeAdd)
    }
}

/// Which end of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

/// An entry read with `get_stale`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stale {
    pub value: DictValue,
    pub flags: u32,
    /// Whether the entry had expired.
    pub stale: bool,
}

enum Stored {
    Scalar(DictValue),
    List(VecDeque<DictValue>),
}

struct Entry {
    stored: Stored,
    flags: u32,
    expires: Option<Instant>,
    size: usize,
}

impl Entry {
    fn new(key: &[u8], stored: Stored, flags: u32, expires: Option<Instant>) -> Entry {
        let size = ENTRY_OVERHEAD
            + key.len()
            + match &stored {
                Stored::Scalar(value) => value.size(),
                Stored::List(items) => items.iter().map(|item| item.size() + LIST_ITEM_OVERHEAD).sum(),
            };
        Entry { stored, flags, expires, size }
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

struct Store {
    entries: LruCache<Vec<u8>, Entry>,
    used: usize,
}

/// One shared dict. All methods take `&self` and lock the dict briefly.
pub struct SharedDict {
    name: String,
    capacity: usize,
    store: Mutex<Store>,
}

/// `exptime` in seconds (0 = never) as a deadline.
fn deadline(now: Instant, exptime: f64) -> Option<Instant> {
    (exptime > 0.0).then(|| now + Duration::from_secs_f64(exptime.min(1e9)))
}

pub(crate) fn check_key(key: &[u8]) -> Result<(), DictError> {
    match key.len() {
        0 => Err(DictError::EmptyKey),
        n if n > MAX_KEY_LEN => Err(DictError::KeyTooLong),
        _ => Ok(()),
    }
}

impl SharedDict {
    pub(crate) fn new(name: String, capacity: usize) -> SharedDict {
        SharedDict { name, capacity, store: Mutex::new(Store { entries: LruCache::unbounded(), used: 0 }) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value and flags of a live key.
    pub fn get(&self, key: &[u8]) -> Result<Option<(DictValue, u32)>, DictError> {
        check_key(key)?;
        let now = Instant::now();
        let mut store = self.store.lock();
        match store.entries.get(key) {
            Some(entry) if !entry.expired(now) => match &entry.stored {
                Stored::Scalar(value) => Ok(Some((value.clone(), entry.flags))),
                Stored::List(_) => Err(DictError::IsAList),
            },
            _ => Ok(None),
        }
    }

    /// Like `get`, but also returns an expired entry that was not removed yet.
    pub fn get_stale(&self, key: &[u8]) -> Result<Option<Stale>, DictError> {
        check_key(key)?;
        let now = Instant::now();
        let mut store = self.store.lock();
        match store.entries.get(key) {
            Some(entry) => match &entry.stored {
                Stored::Scalar(value) => {
                    Ok(Some(Stale { value: value.clone(), flags: entry.flags, stale: entry.expired(now) }))
                }
                Stored::List(_) => Err(DictError::IsAList),
            },
            None => Ok(None),
        }
    }

    /// Stores `value` (None deletes) for `exptime` seconds (0 = no expiry). `Ok(forcible)` says
    /// whether live entries were evicted to make room.
    pub fn store(
        &self,
        mode: StoreMode,
        key: &[u8],
        value: Option<DictValue>,
        exptime: f64,
        flags: u32,
    ) -> Result<bool, (DictError, bool)> {
        check_key(key).map_err(|e| (e, false))?;
        let now = Instant::now();
        let mut store = self.store.lock();
        let live = store.entries.peek(key).is_some_and(|entry| !entry.expired(now));
        match mode {
            StoreMode::Add | StoreMode::SafeAdd if live => return Err((DictError::Exists, false)),
            StoreMode::Replace if !live => return Err((DictError::NotFound, false)),
            _ => {}
        }
        let Some(value) = value else {
            store.remove(key);
            return Ok(false);
        };
        let entry = Entry::new(key, Stored::Scalar(value), flags, deadline(now, exptime));
        self.insert(&mut store, key, entry, mode.may_evict(), now)
    }

    /// `incr`: adds `by` to a number, or stores `init + by` (expiring after `init_ttl` seconds)
    /// when the key is absent and `init` is given. Returns the new value and whether live
    /// entries were evicted.
    pub fn incr(&self, key: &[u8], by: f64, init: Option<f64>, init_ttl: f64) -> Result<(f64, bool), DictError> {
        check_key(key)?;
        let now = Instant::now();
        let mut store = self.store.lock();
        match store.entries.get_mut(key) {
            Some(entry) if !entry.expired(now) => match &mut entry.stored {
                Stored::Scalar(DictValue::Number(n)) => {
                    *n += by;
                    Ok((*n, false))
                }
                _ => Err(DictError::NotANumber),
            },
            _ => {
                let value = init.ok_or(DictError::NotFound)? + by;
                let entry = Entry::new(key, Stored::Scalar(DictValue::Number(value)), 0, deadline(now, init_ttl));
                let forcible = self.insert(&mut store, key, entry, true, now).map_err(|(e, _)| e)?;
                Ok((value, forcible))
            }
        }
    }

    /// `lpush`/`rpush`: the list's new length.
    pub fn push(&self, end: End, key: &[u8], value: DictValue) -> Result<usize, DictError> {
        check_key(key)?;
        let now = Instant::now();
        let mut store = self.store.lock();
        let added = value.size() + LIST_ITEM_OVERHEAD;
        match store.entries.peek(key) {
            Some(entry) if !entry.expired(now) => {
                if !matches!(entry.stored, Stored::List(_)) {
                    return Err(DictError::NotAList);
                }
                self.make_room(&mut store, added, Some(key), true, now).map_err(|(e, _)| e)?;
                store.used += added;
                let entry = store.entries.get_mut(key).expect("the list was just seen");
                entry.size += added;
                let Stored::List(items) = &mut entry.stored else { unreachable!("checked to be a list") };
                match end {
                    End::Left => items.push_front(value),
                    End::Right => items.push_back(value),
                }
                Ok(items.len())
            }
            _ => {
                let entry = Entry::new(key, Stored::List(VecDeque::from([value])), 0, None);
                self.insert(&mut store, key, entry, true, now).map_err(|(e, _)| e)?;
                Ok(1)
            }
        }
    }

    /// `lpop`/`rpop`: the element taken, None when the list is absent or empty.
    pub fn pop(&self, end: End, key: &[u8]) -> Result<Option<DictValue>, DictError> {
        check_key(key)?;
        let now = Instant::now();
        let mut store = self.store.lock();
        let Some(entry) = store.entries.get_mut(key).filter(|entry| !entry.expired(now)) else {
            return Ok(None);
        };
        let Stored::List(items) = &mut entry.stored else { return Err(DictError::NotAList) };
        let value = match end {
            End::Left => items.pop_front(),
            End::Right => items.pop_back(),
        };
        let (emptied, freed) = (items.is_empty(), value.as_ref().map_or(0, |v| v.size() + LIST_ITEM_OVERHEAD));
        entry.size -= freed;
        store.used -= freed;
        if emptied {
            store.remove(key);
        }
        Ok(value)
    }

    /// `llen`: 0 for an absent key.
    pub fn llen(&self, key: &[u8]) -> Result<usize, DictError> {
        check_key(key)?;
        let now = Instant::now();
        let store = self.store.lock();
        match store.entries.peek(key) {
            Some(entry) if !entry.expired(now) => match &entry.stored {
                Stored::List(items) => Ok(items.len()),
                Stored::Scalar(_) => Err(DictError::NotAList),
            },
            _ => Ok(0),
        }
    }

    /// Seconds left before the key expires; 0 when it never does.
    pub fn ttl(&self, key: &[u8]) -> Result<f64, DictError> {
        check_key(key)?;
        let now = Instant::now();
        let store = self.store.lock();
        match store.entries.peek(key) {
            Some(entry) if !entry.expired(now) => Ok(entry.expires.map_or(0.0, |at| (at - now).as_secs_f64())),
            _ => Err(DictError::NotFound),
        }
    }

    /// Sets a live key's expiry, `exptime` seconds from now (0 = never).
    pub fn expire(&self, key: &[u8], exptime: f64) -> Result<(), DictError> {
        check_key(key)?;
        let now = Instant::now();
        let mut store = self.store.lock();
        match store.entries.peek_mut(key) {
            Some(entry) if !entry.expired(now) => {
                entry.expires = deadline(now, exptime);
                Ok(())
            }
            _ => Err(DictError::NotFound),
        }
    }

    /// `flush_all`: every entry expires now (their memory is reclaimed by later stores or by
    /// `flush_expired`, as in nginx; `get_stale` still sees them).
    pub fn flush_all(&self) {
        let now = Instant::now();
        let mut store = self.store.lock();
        for (_, entry) in store.entries.iter_mut() {
            entry.expires = Some(now);
        }
    }

    /// Removes up to `max` expired entries (0 = all); returns how many.
    pub fn flush_expired(&self, max: usize) -> usize {
        let now = Instant::now();
        let mut store = self.store.lock();
        let expired: Vec<Vec<u8>> = store
            .entries
            .iter()
            .filter(|(_, entry)| entry.expired(now))
            .map(|(key, _)| key.clone())
            .take(if max == 0 { usize::MAX } else { max })
            .collect();
        for key in &expired {
            store.remove(key);
        }
        expired.len()
    }

    /// Up to `max` live keys (0 = all), most recently used first.
    pub fn keys(&self, max: usize) -> Vec<Vec<u8>> {
        let now = Instant::now();
        let store = self.store.lock();
        let live = store.entries.iter().filter(|(_, entry)| !entry.expired(now)).map(|(key, _)| key.clone());
        live.take(if max == 0 { usize::MAX } else { max }).collect()
    }

    /// The configured size in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes not used by entries (expired ones count until they are removed).
    pub fn free_space(&self) -> usize {
        self.capacity.saturating_sub(self.store.lock().used)
    }

    /// Inserts `entry` under `key`, replacing what was there, after making room.
    fn insert(
        &self,
        store: &mut Store,
        key: &[u8],
        entry: Entry,
        may_evict: bool,
        now: Instant,
    ) -> Result<bool, (DictError, bool)> {
        let old = store.entries.peek(key).map_or(0, |old| old.size);
        let needed = entry.size.saturating_sub(old);
        let forcible = self.make_room(store, needed, Some(key), may_evict, now)?;
        store.remove(key);
        store.used += entry.size;
        store.entries.put(key.to_vec(), entry);
        Ok(forcible)
    }

    /// Frees at least `needed` bytes: expired entries first, then (if allowed) the least
    /// recently used live ones. `spare` is never evicted (the key being written). Returns
    /// whether live entries went.
    fn make_room(
        &self,
        store: &mut Store,
        needed: usize,
        spare: Option<&[u8]>,
        may_evict: bool,
        now: Instant,
    ) -> Result<bool, (DictError, bool)> {
        if needed > self.capacity {
            return Err((DictError::NoMemory, false));
        }
        if store.used + needed <= self.capacity {
            return Ok(false);
        }
        let expired: Vec<Vec<u8>> = store
            .entries
            .iter()
            .rev()
            .filter(|(key, entry)| entry.expired(now) && Some(key.as_slice()) != spare)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            store.remove(key);
            if store.used + needed <= self.capacity {
                return Ok(false);
            }
        }
        let mut forcible = false;
        while store.used + needed > self.capacity {
            if !may_evict {
                return Err((DictError::NoMemory, forcible));
            }
            let victim =
                store.entries.iter().rev().map(|(key, _)| key).find(|key| Some(key.as_slice()) != spare).cloned();
            let Some(victim) = victim else { return Err((DictError::NoMemory, forcible)) };
            store.remove(&victim);
            forcible = true;
        }
        Ok(forcible)
    }
}

impl Store {
    fn remove(&mut self, key: &[u8]) {
        if let Some(entry) = self.entries.pop(key) {
            self.used -= entry.size;
        }
    }
}

impl fmt::Debug for SharedDict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedDict").field("name", &self.name).field("capacity", &self.capacity).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(capacity: usize) -> SharedDict {
        SharedDict::new("d".into(), capacity)
    }

    fn s(text: &str) -> DictValue {
        DictValue::String(text.as_bytes().to_vec())
    }

    #[test]
    fn least_recently_used_entries_are_evicted_first() {
        let d = dict(3 * (ENTRY_OVERHEAD + 2));
        for key in ["a", "b", "c"] {
            assert_eq!(d.store(StoreMode::Set, key.as_bytes(), Some(s("x")), 0.0, 0), Ok(false));
        }
        d.get(b"a").unwrap(); // a is now the most recently used
        assert_eq!(d.store(StoreMode::Set, b"d", Some(s("x")), 0.0, 0), Ok(true));
        assert_eq!(d.get(b"b"), Ok(None), "b was the least recently used");
        assert!(d.get(b"a").unwrap().is_some());
        assert_eq!(d.store(StoreMode::SafeSet, b"e", Some(s("x")), 0.0, 0), Err((DictError::NoMemory, false)));
    }

    #[test]
    fn expired_entries_go_before_live_ones() {
        let d = dict(2 * (ENTRY_OVERHEAD + 4)); // two entries of a 3-byte key and a 1-byte value
        d.store(StoreMode::Set, b"old", Some(s("x")), 0.0, 0).unwrap();
        d.store(StoreMode::Set, b"tmp", Some(s("x")), 0.001, 0).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(d.store(StoreMode::Set, b"new", Some(s("x")), 0.0, 0), Ok(false), "no live entry evicted");
        assert!(d.get(b"old").unwrap().is_some());
    }

    #[test]
    fn accounting_returns_to_empty() {
        let d = dict(1 << 20);
        d.store(StoreMode::Set, b"k", Some(s("value")), 0.0, 0).unwrap();
        d.push(End::Right, b"l", s("a")).unwrap();
        d.push(End::Left, b"l", DictValue::Number(1.0)).unwrap();
        d.incr(b"n", 1.0, Some(0.0), 0.0).unwrap();
        assert!(d.free_space() < d.capacity());
        d.store(StoreMode::Set, b"k", None, 0.0, 0).unwrap();
        d.pop(End::Left, b"l").unwrap();
        d.pop(End::Left, b"l").unwrap();
        d.store(StoreMode::Set, b"n", None, 0.0, 0).unwrap();
        assert_eq!(d.free_space(), d.capacity());
    }
}
