//! The hash of member names (and codes) that the generated perfect-hash tables are built
//! with. This one file is compiled into both the generator (`epic-fhir-codegen`, which
//! includes it by path to search the tables' seeds) and the model crate (which looks names
//! up), so the two cannot disagree.

/// A few word loads of the name (no loop over its bytes) mixed with the seed.
#[inline]
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_hash_keeps_its_values() {
        // Generated tables were searched with these values: a change to the hash needs the
        // models generated again.
        for (key, seed, hash) in [
            ("", 0, 0xa79d_8c26),
            ("id", 1, 0xd890_110b),
            ("code", 7, 0x2938_a6ff),
            ("display", 3, 0x15b0_0e47),
            ("valueQuantity", 12, 0x18c9_e1ba),
            ("modifierExtension", 5, 0x9277_3750),
            ("defaultValueContactDetail", 40, 0x6532_d7bf),
        ] {
            assert_eq!(super::key_hash(key.as_bytes(), seed), hash, "{key}");
        }
    }
}
