//! Perfect hash tables from names to small indexes, searched at generation time.

// The hash itself is the model crate's, compiled here from the same file.
#[path = "../../epic-fhir-model/src/key_hash.rs"]
mod key_hash;
pub(crate) use key_hash::key_hash;

/// A table whose slots hold each name at `hash(name, seed) & (len - 1)`.
pub(crate) struct Table {
    pub(crate) seed: u32,
    pub(crate) slots: Vec<Option<(String, u16)>>,
}

/// Finds the smallest seed (and, failing that, a larger table) with no two names in one slot.
pub(crate) fn build(entries: &[(String, u16)]) -> Table {
    let mut size = (entries.len() * 2).max(4).next_power_of_two();
    loop {
        for seed in 0..20_000u32 {
            let mut slots: Vec<Option<(String, u16)>> = vec![None; size];
            let mut ok = true;
            for (name, index) in entries {
                let slot = key_hash(name.as_bytes(), seed) as usize & (size - 1);
                if slots[slot].is_some() {
                    ok = false;
                    break;
                }
                slots[slot] = Some((name.clone(), *index));
            }
            if ok {
                return Table { seed, slots };
            }
        }
        size *= 2;
        // Names the hash cannot tell apart (equal in length and in every byte it loads) would
        // never separate.
        assert!(
            size <= 1 << 16,
            "no perfect hash for these names: {entries:?}"
        );
    }
}

/// The table as a Rust `static` of type `rt::KeyTable` named `name`.
pub(crate) fn emit(name: &str, entries: &[(String, u16)], indent: &str) -> String {
    let table = build(entries);
    let mut out = format!(
        "{indent}static {name}: rt::KeyTable = rt::KeyTable {{\n{indent}    seed: {},\n{indent}    slots: &[",
        table.seed
    );
    for (i, slot) in table.slots.iter().enumerate() {
        if i % 4 == 0 {
            out.push_str(&format!("\n{indent}        "));
        } else {
            out.push(' ');
        }
        match slot {
            Some((key, index)) => out.push_str(&format!("({key:?}, {index}),")),
            None => out.push_str("(\"\", 0),"),
        }
    }
    out.push_str(&format!("\n{indent}    ],\n{indent}}};\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_finds_its_index_and_no_other_does() {
        let entries: Vec<(String, u16)> =
            ["id", "extension", "valueQuantity", "valueString", "code"]
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), i as u16 + 1))
                .collect();
        let table = build(&entries);
        let find = |key: &str| {
            let slot = key_hash(key.as_bytes(), table.seed) as usize & (table.slots.len() - 1);
            match &table.slots[slot] {
                Some((name, index)) if name == key => *index,
                _ => 0,
            }
        };
        for (name, index) in &entries {
            assert_eq!(find(name), *index);
        }
        assert_eq!(find("unknown"), 0);
        assert_eq!(find(""), 0);
    }
}
