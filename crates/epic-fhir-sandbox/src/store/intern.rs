//! String interning for index entries.
//!
//! Index values repeat enormously: every Observation of a patient names the same patient id,
//! the same LOINC system and one of a few hundred codes and displays. Storing each string
//! once and keeping a 4-byte symbol in every index entry keeps the index small, and turns
//! token and reference comparisons into integer comparisons.

use std::collections::HashMap;
use std::sync::Arc;

/// A handle to an interned string. Symbol 0 is reserved for "absent" (no system, no type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Sym(u32);

impl Sym {
    /// The reserved "no value" symbol.
    pub(crate) const NONE: Sym = Sym(0);

    /// True for [`Sym::NONE`].
    pub(crate) fn is_none(self) -> bool {
        self == Sym::NONE
    }
}

/// Approximate bytes of bookkeeping per interned string (the `Arc` header, the vector slot
/// and a hash map entry), used for the store's memory estimate.
const OVERHEAD_PER_STRING: usize = 16 + 16 + 40;

/// A grow-only string table. It lives inside the store's lock, so it needs no locking itself.
#[derive(Debug)]
pub(crate) struct Interner {
    strings: Vec<Arc<str>>,
    lookup: HashMap<Arc<str>, Sym>,
    bytes: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            strings: vec![Arc::from("")],
            lookup: HashMap::new(),
            bytes: 0,
        }
    }
}

impl Interner {
    /// Returns the symbol of `text`, adding it on first use.
    pub(crate) fn intern(&mut self, text: &str) -> Sym {
        if text.is_empty() {
            return Sym::NONE;
        }
        if let Some(&sym) = self.lookup.get(text) {
            return sym;
        }
        // Past four billion distinct strings the table saturates on the last symbol rather
        // than panicking; no in-memory sandbox gets near that.
        let sym = Sym(u32::try_from(self.strings.len()).unwrap_or(u32::MAX));
        let shared: Arc<str> = Arc::from(text);
        self.strings.push(Arc::clone(&shared));
        self.lookup.insert(shared, sym);
        self.bytes += text.len() + OVERHEAD_PER_STRING;
        sym
    }

    /// Returns the symbol of `text` if it was ever interned. A query string that was never
    /// interned cannot equal any indexed value, which lets searches reject early.
    pub(crate) fn get(&self, text: &str) -> Option<Sym> {
        if text.is_empty() {
            return Some(Sym::NONE);
        }
        self.lookup.get(text).copied()
    }

    /// The string behind a symbol (empty for [`Sym::NONE`]).
    pub(crate) fn resolve(&self, sym: Sym) -> &str {
        self.strings
            .get(sym.0 as usize)
            .map_or("", |text| text.as_ref())
    }

    /// Approximate heap bytes held by the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent_and_reversible() {
        let mut interner = Interner::default();
        let loinc = interner.intern("http://loinc.org");
        let code = interner.intern("8302-2");
        assert_ne!(loinc, code);
        assert_eq!(interner.intern("http://loinc.org"), loinc);
        assert_eq!(interner.resolve(loinc), "http://loinc.org");
        assert_eq!(interner.get("8302-2"), Some(code));
        assert_eq!(interner.get("never seen"), None);
        assert!(!loinc.is_none());
        assert_eq!(interner.resolve(Sym::NONE), "");
        assert_eq!(interner.intern(""), Sym::NONE);
        assert_eq!(interner.get(""), Some(Sym::NONE));
        assert!(interner.heap_bytes() > "http://loinc.org8302-2".len());
    }
}
