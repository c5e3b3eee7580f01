//! Shared dicts: declared in `le_config`, shared by all workers.

use super::{le_str, slice};
use crate::error::Error;

/// A shared dict to create: scripts reach it as `ngx.shared.<name>`.
#[repr(C)]
pub struct le_dict_config {
    /// UTF-8, unique within the engine.
    pub name: le_str,
    /// Bytes the dict may hold (keys, values and a per-entry overhead); at least 32 KiB.
    pub capacity: usize,
}

/// The engine's copy of the dicts in a config.
///
/// # Safety
/// `dicts` must hold `n` valid `le_dict_config`s.
pub(crate) unsafe fn dict_configs(dicts: *const le_dict_config, n: usize) -> Result<Vec<(String, usize)>, Error> {
    let dicts = unsafe { slice(dicts, n, "config.shared_dicts")? };
    dicts
        .iter()
        .map(|dict| Ok((unsafe { dict.name.text("config.shared_dicts name")? }.to_string(), dict.capacity)))
        .collect()
}
