//! (filled in by its owner)

use super::table::Entry;

pub(crate) const ENTRIES: &[Entry] = &[];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
