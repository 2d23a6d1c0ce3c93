//! Perfect hash tables from names to small indexes, searched at generation time.

/// The hash the model crate's `rt::key_hash` computes: a few word loads of the name (no loop
/// over its bytes) multiplied with the seed.
pub(crate) fn key_hash(key: &[u8], seed: u32) -> u32 {
    // Loads that together cover every byte of names up to 16 bytes (overlapping where the
    // name is shorter than the loads), and the first, middle and last eight beyond that.
    let len = key.len();
    let at = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
    let word4 = |i: usize| match key.get(i..i + 4) {
        Some(&[a, b, c, d]) => u64::from(u32::from_le_bytes([a, b, c, d])),
        _ => 0,
    };
    let word8 = |i: usize| match key.get(i..i + 8) {
        Some(bytes) => u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])),
        None => 0,
    };
    let (a, b) = if len >= 8 {
        let middle = if len > 16 { word8(len / 2 - 4) } else { 0 };
        (word8(0) ^ middle.rotate_left(17), word8(len - 8))
    } else if len >= 4 {
        (word4(0), word4(len - 4))
    } else {
        (at(0) | at(len / 2) << 8 | at(len.wrapping_sub(1)) << 16, 0)
    };
    // A folded 64 × 64 → 128-bit multiply: every bit of the result depends on every bit of
    // both words.
    let product = u128::from(a ^ 0x9e37_79b9_7f4a_7c15 ^ u64::from(seed))
        * u128::from(b ^ len as u64 ^ 0xc2b2_ae3d_27d4_eb4f);
    let mixed = product as u64 ^ (product >> 64) as u64;
    (mixed >> 32) as u32 ^ mixed as u32
}

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
    fn the_key_hash_is_the_model_crates() {
        // The same pins are in the model crate's tests (`rt.rs`): the two copies of the hash
        // must agree, or generated tables would not find their names.
        for (key, seed, hash) in [
            ("", 0, 0xa79d_8c26),
            ("id", 1, 0xd890_110b),
            ("code", 7, 0x2938_a6ff),
            ("display", 3, 0x15b0_0e47),
            ("valueQuantity", 12, 0x18c9_e1ba),
            ("modifierExtension", 5, 0x9277_3750),
            ("defaultValueContactDetail", 40, 0x6532_d7bf),
        ] {
            assert_eq!(key_hash(key.as_bytes(), seed), hash, "{key}");
        }
    }

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
