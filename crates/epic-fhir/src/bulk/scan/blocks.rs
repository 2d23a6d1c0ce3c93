//! The line check of [`super`], 64 bytes at a time, for the lines bulk servers write: compact
//! JSON objects (no whitespace between tokens) ended by `\n`.
//!
//! The byte-at-a-time scanner steps through a grammar state machine for every token, about
//! 2.6 CPU cycles per byte; at bulk rates that was the larger part of the client's CPU. Here
//! each block of 64 bytes is first turned into bit masks, one bit per byte (quotes,
//! backslashes, control bytes, brackets, colons, commas), with SSE2 compares. The masks give
//! which bytes lie inside strings (a prefix XOR of the unescaped quotes), and JSON's grammar
//! becomes a handful of rules on neighbouring bits (what may follow `{`, `:`, `,`, a closing
//! quote, a closing bracket or a number), checked for all 64 positions at once. Only the
//! brackets (to match them and to know whether a comma separates members or items), numbers
//! and literals, escape sequences and the top-level keys are looked at one by one.
//!
//! This is a fast path: whatever it does not accept (whitespace between tokens, a `\r` before
//! the newline, an escape in a top-level key or value, deep nesting, invalid JSON) it leaves to
//! the scanner in [`super`], which decides. It never accepts a line that scanner refuses, which
//! the tests and the `ndjson` fuzz target check byte for byte.

use std::ops::Range;

use super::{MAX_DEPTH, Scanner};

/// What the block scanner found at the start of the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Block {
    /// A valid JSON object ended by the `\n` at this index; the byte range of its top-level
    /// `resourceType` string's content, when it has one.
    Record(usize, Option<Range<usize>>),
    /// The bytes hold no `\n` and nothing wrong so far: the line goes on in later bytes.
    Incomplete,
    /// The fast path cannot say; the byte-at-a-time scanner decides.
    Undecided,
}

/// Bits at even positions (0, 2, ...) and at odd positions.
const EVEN_BITS: u64 = 0x5555_5555_5555_5555;
const ODD_BITS: u64 = !EVEN_BITS;

/// One bit per byte of a 64-byte block, for each class of byte the grammar cares about.
#[derive(Default)]
struct Classes {
    quote: u64,
    backslash: u64,
    colon: u64,
    comma: u64,
    /// Bytes below 0x20: `\n` ends the line, any other is refused here.
    control: u64,
    /// `{` or `[`.
    open: u64,
    /// `}` or `]`.
    close: u64,
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify(block: &[u8; 64]) -> Classes {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, m128i, min_u8_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let splat = |byte: u8| set_splat_i8_m128i(byte as i8);
    let mut classes = Classes::default();
    for (index, lane) in block.chunks_exact(16).enumerate() {
        let Ok(lane) = <&[u8; 16]>::try_from(lane) else {
            continue;
        };
        let shift = index * 16;
        let bits = |mask: m128i| u64::from(move_mask_i8_m128i(mask) as u16) << shift;
        let bytes = load_unaligned_m128i(lane);
        let equal = |byte: u8| bits(cmp_eq_mask_i8_m128i(bytes, splat(byte)));
        classes.quote |= equal(b'"');
        classes.backslash |= equal(b'\\');
        classes.colon |= equal(b':');
        classes.comma |= equal(b',');
        // `{` and `[` differ only in bit 0x20, as do `}` and `]`.
        let folded = bitor_m128i(bytes, splat(0x20));
        classes.open |= bits(cmp_eq_mask_i8_m128i(folded, splat(b'{')));
        classes.close |= bits(cmp_eq_mask_i8_m128i(folded, splat(b'}')));
        // Below 0x20 unsigned: the byte equals its minimum with 0x1f.
        classes.control |= bits(cmp_eq_mask_i8_m128i(
            min_u8_m128i(bytes, splat(0x1f)),
            bytes,
        ));
    }
    classes
}

/// The same classes without SIMD, for other architectures (and as the tests' reference).
#[cfg(any(test, not(target_arch = "x86_64")))]
fn classify_bytes(block: &[u8; 64]) -> Classes {
    let mut classes = Classes::default();
    for (index, &byte) in block.iter().enumerate() {
        let bit = 1u64 << index;
        let set = |mask: &mut u64, yes: bool| {
            if yes {
                *mask |= bit;
            }
        };
        set(&mut classes.quote, byte == b'"');
        set(&mut classes.backslash, byte == b'\\');
        set(&mut classes.colon, byte == b':');
        set(&mut classes.comma, byte == b',');
        set(&mut classes.open, byte == b'{' || byte == b'[');
        set(&mut classes.close, byte == b'}' || byte == b']');
        set(&mut classes.control, byte < 0x20);
    }
    classes
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn classify(block: &[u8; 64]) -> Classes {
    classify_bytes(block)
}

/// Where the set bits of `mask` (a block at `offset` in the bytes) point, in order.
#[inline]
fn positions(mask: u64, offset: usize) -> impl Iterator<Item = usize> {
    let mut rest = mask;
    std::iter::from_fn(move || {
        (rest != 0).then(|| {
            let bit = rest.trailing_zeros();
            rest &= rest - 1;
            offset + bit as usize
        })
    })
}

/// Bits `from..to` (`to` at most 64).
#[inline]
fn span(from: u32, to: u32) -> u64 {
    let below = |n: u32| if n >= 64 { !0 } else { (1u64 << n) - 1 };
    below(to) & !below(from)
}

/// Each bit moved to the next position, the previous block's last bit entering at 0.
#[inline]
fn after(mask: u64, carry: u64) -> u64 {
    (mask << 1) | carry
}

/// Every bit XORed with all the bits below it: with the unescaped quotes, the bytes from an
/// opening quote up to (not including) its closing quote.
#[inline]
fn prefix_xor(mut bits: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        bits ^= bits << shift;
    }
    bits
}

/// The bytes escaped by a backslash: those right after a run of backslashes of odd length.
/// `carry` is 1 when the previous block ended inside such a run with an escape pending, and is
/// updated for the next block.
#[inline]
fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    // A backslash escaped by the previous block's last one starts no escape itself.
    let pending = *carry;
    let original = backslash;
    let backslash = backslash & !pending;
    let starts = backslash & !(backslash << 1);
    // Adding a run's first bit to the run carries it to the byte after the run. A run of odd
    // length that starts at an even position ends before an odd position, and the other way
    // round.
    let (from_even, _) = backslash.overflowing_add(starts & EVEN_BITS);
    let (from_odd, overflow) = backslash.overflowing_add(starts & ODD_BITS);
    // A run from an odd position through bit 63 has odd length: the next block's first byte
    // is escaped.
    *carry = u64::from(overflow);
    (from_even & !backslash & ODD_BITS)
        | (from_odd & !backslash & EVEN_BITS)
        | (pending & !original)
}

/// What carries from one block to the next: the last bit of some masks, and the scan's state.
#[derive(Default)]
struct Carry {
    /// All ones when the previous block ended inside a string.
    in_string: u64,
    escape: u64,
    open: u64,
    object_open: u64,
    close: u64,
    colon: u64,
    comma: u64,
    member_comma: u64,
    closing_quote: u64,
    scalar: u64,
    /// The last byte was `{` or a comma between members: a key follows.
    key_follows: u64,
    key_end: u64,
    /// The carry of the addition that finds where key strings end.
    key_add: u64,
}

/// The scan's position in the nesting of containers.
struct Nesting {
    /// Bit `d` is 1 when the container at depth `d` is an object.
    objects: u128,
    depth: usize,
    in_object: bool,
    /// Where the line ends: just after the `}` that closes the top-level object.
    end: Option<usize>,
}

/// Scans the line at the start of `bytes` (which run on past it), as [`super::scan_record`]
/// does, 64 bytes at a time.
pub(crate) fn scan_record(bytes: &[u8]) -> Block {
    if bytes.first() != Some(&b'{') {
        return if bytes.is_empty() {
            Block::Incomplete
        } else {
            Block::Undecided
        };
    }
    let mut carry = Carry::default();
    let mut nesting = Nesting {
        objects: 0,
        depth: 0,
        in_object: false,
        end: None,
    };
    let mut resource_type: Option<Range<usize>> = None;
    let mut offset = 0;
    // The last, partial block is copied here (its end is masked off).
    let mut padded = [b' '; 64];
    loop {
        let rest = &bytes[offset.min(bytes.len())..];
        if rest.is_empty() {
            return Block::Incomplete;
        }
        let (block, length) = match <&[u8; 64]>::try_from(rest.get(..64).unwrap_or(&[])) {
            Ok(block) => (block, 64),
            Err(_) => {
                padded[..rest.len()].copy_from_slice(rest);
                (&padded, rest.len())
            }
        };
        let classes = classify(block);
        let present = span(0, length as u32);
        let control = classes.control & present;
        // The line ends at its first control byte, which must be the `\n`.
        let (valid, line_end) = if control == 0 {
            (present, None)
        } else {
            let at = control.trailing_zeros();
            (span(0, at), Some(offset + at as usize))
        };

        let backslash = classes.backslash & valid;
        let escaped = if backslash == 0 && carry.escape == 0 {
            0
        } else {
            escaped(backslash, &mut carry.escape) & valid
        };
        let quotes = classes.quote & valid & !escaped;
        let in_string = (prefix_xor(quotes) ^ carry.in_string) & valid;
        let next_in_string = 0u64.wrapping_sub(in_string >> 63);
        let outside = valid & !in_string;
        // A backslash outside a string is not JSON.
        if backslash & outside != 0 {
            return give_up(line_end, offset, bytes.len());
        }
        if !positions(escaped, offset).all(|at| escape_is_plain(bytes, at)) {
            return give_up(line_end, offset, bytes.len());
        }
        let opening_quote = quotes & in_string;
        let closing_quote = quotes & !in_string;
        let open = classes.open & outside;
        let close = classes.close & outside;
        let colon = classes.colon & outside;
        let comma = classes.comma & outside;
        // Everything else outside strings: numbers and literals (whitespace too, which then
        // fails their check and leaves the line to the other scanner).
        let scalar = outside & !(open | close | colon | comma | closing_quote);
        let scalar_start = scalar & !after(scalar, carry.scalar);
        let value_start = opening_quote | open | scalar_start;

        let Some(brackets) = walk_brackets(bytes, offset, open, close, &mut nesting) else {
            return give_up(line_end, offset, bytes.len());
        };
        let member_comma = comma & brackets.in_object;

        let mut wrong = 0;
        wrong |= after(open, carry.open) & valid & !(value_start | close);
        wrong |= after(brackets.object_opens, carry.object_open) & valid & !(opening_quote | close);
        wrong |= after(colon, carry.colon) & valid & !value_start;
        wrong |= after(comma, carry.comma) & valid & !value_start;
        wrong |= after(member_comma, carry.member_comma) & valid & !opening_quote;
        wrong |= after(closing_quote, carry.closing_quote) & valid & !(colon | comma | close);
        wrong |= after(close, carry.close) & valid & !(comma | close);
        wrong |= after(scalar, carry.scalar) & valid & !scalar & !(comma | close);
        // Keys: the strings after `{` and after the commas between members. Adding each key's
        // opening-quote bit to the string mask carries it to the key's closing quote, and
        // exactly the bytes after those closing quotes must be colons.
        let key_follows = brackets.object_opens | member_comma;
        let key_start = opening_quote & after(key_follows, carry.key_follows);
        let (sum, first) = in_string.overflowing_add(key_start);
        let (sum, second) = sum.overflowing_add(carry.key_add);
        let key_end = sum & !in_string & valid;
        wrong |= (after(key_end, carry.key_end) ^ colon) & valid;
        // An escape in a top-level key could spell `resourceType`: left to the other scanner,
        // which gives up on those too. The additions above cleared the keys' bytes.
        let key_bytes = in_string & !sum;
        wrong |= backslash & key_bytes & brackets.top_level;
        if wrong != 0 {
            return give_up(line_end, offset, bytes.len());
        }

        if !positions(scalar_start, offset).all(|at| scalar_is_whole(bytes, at)) {
            return give_up(line_end, offset, bytes.len());
        }
        // Only a key whose closing quote is 13 bytes on can be `resourceType` (a closing
        // quote in the next block cannot be seen here).
        let top_keys = key_start & brackets.top_level & ((key_end >> 13) | (u64::MAX << 51));
        for at in positions(top_keys, offset) {
            if bytes.get(at + 1..at + 14) == Some(b"resourceType\"") {
                if resource_type.is_some() {
                    return give_up(line_end, offset, bytes.len());
                }
                match string_value_after_key(bytes, at + 14) {
                    Some(range) => resource_type = Some(range),
                    None => return give_up(line_end, offset, bytes.len()),
                }
            }
        }

        if let Some(end) = line_end {
            if bytes.get(end) != Some(&b'\n') || nesting.end != Some(end) {
                return give_up(line_end, offset, bytes.len());
            }
            // UTF-8 once per line (std's check runs through ASCII many bytes at a time).
            if std::str::from_utf8(&bytes[..end]).is_err() {
                return give_up(line_end, offset, bytes.len());
            }
            return Block::Record(end, resource_type);
        }
        if length < 64 {
            return Block::Incomplete;
        }
        carry = Carry {
            in_string: next_in_string,
            escape: carry.escape,
            open: open >> 63,
            object_open: brackets.object_opens >> 63,
            close: close >> 63,
            colon: colon >> 63,
            comma: comma >> 63,
            member_comma: member_comma >> 63,
            closing_quote: closing_quote >> 63,
            scalar: scalar >> 63,
            key_follows: key_follows >> 63,
            key_end: key_end >> 63,
            key_add: u64::from(first | second),
        };
        offset += 64;
    }
}

/// The verdict when a check fails: a line with no `\n` in the bytes given (the last block,
/// without a control byte) is only incomplete, and is checked whole once its end arrives.
fn give_up(line_end: Option<usize>, offset: usize, length: usize) -> Block {
    if line_end.is_none() && offset + 64 >= length {
        Block::Incomplete
    } else {
        Block::Undecided
    }
}

/// What the walk over a block's brackets found.
struct Brackets {
    /// Bytes whose innermost container is an object.
    in_object: u64,
    /// Bytes directly inside the top-level object.
    top_level: u64,
    /// The `{` of the block.
    object_opens: u64,
}

/// Matches the block's brackets (bits of `open` and `close`, at `offset` in `bytes`) against
/// the containers still open, in order. `None` when they do not match, when the top-level
/// object closes anywhere but just before a `\n`, or when nesting is too deep.
#[inline]
fn walk_brackets(
    bytes: &[u8],
    offset: usize,
    open: u64,
    close: u64,
    nesting: &mut Nesting,
) -> Option<Brackets> {
    let mut found = Brackets {
        in_object: 0,
        top_level: 0,
        object_opens: 0,
    };
    let mut brackets = open | close;
    let mut from = 0;
    while brackets != 0 {
        let bit = brackets.trailing_zeros();
        // The bytes up to and including this bracket are in the container open before it.
        let range = span(from, bit + 1);
        if nesting.in_object {
            found.in_object |= range;
        }
        if nesting.depth == 1 {
            found.top_level |= range;
        }
        let at = offset + bit as usize;
        // `{` and `}` have bit 0x20, `[` and `]` do not.
        let curly = bytes.get(at).is_some_and(|byte| byte & 0x20 != 0);
        if open >> bit & 1 == 1 {
            if nesting.depth >= MAX_DEPTH || nesting.end.is_some() {
                return None;
            }
            if curly {
                nesting.objects |= 1 << nesting.depth;
                found.object_opens |= 1 << bit;
            } else {
                nesting.objects &= !(1 << nesting.depth);
            }
            nesting.depth += 1;
            nesting.in_object = curly;
        } else {
            if nesting.depth == 0 || nesting.in_object != curly {
                return None;
            }
            nesting.depth -= 1;
            if nesting.depth == 0 {
                // The top-level object ends here: the line must end too.
                if bytes.get(at + 1) != Some(&b'\n') {
                    return None;
                }
                nesting.end = Some(at + 1);
                nesting.in_object = false;
            } else {
                nesting.in_object = nesting.objects >> (nesting.depth - 1) & 1 == 1;
            }
        }
        from = bit + 1;
        brackets &= brackets - 1;
    }
    let range = span(from, 64);
    if nesting.in_object {
        found.in_object |= range;
    }
    if nesting.depth == 1 {
        found.top_level |= range;
    }
    Some(found)
}

/// Whether the escape whose backslash precedes `at` is one JSON allows, and not a surrogate
/// (whose pairing the other scanner leaves to `serde_json`).
fn escape_is_plain(bytes: &[u8], at: usize) -> bool {
    match bytes.get(at) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => true,
        Some(b'u') => {
            let Some(digits) = bytes.get(at + 1..at + 5) else {
                return false;
            };
            let mut unit = 0u32;
            for &digit in digits {
                match char::from(digit).to_digit(16) {
                    Some(value) => unit = unit * 16 + value,
                    None => return false,
                }
            }
            !(0xD800..=0xDFFF).contains(&unit)
        }
        _ => false,
    }
}

/// Whether a number or literal starts at `at` and is followed directly by `,`, `}` or `]`
/// (the masks already require one of those after the run of bytes, so this says the run is
/// exactly one number or literal).
fn scalar_is_whole(bytes: &[u8], at: usize) -> bool {
    let mut scanner = Scanner {
        bytes,
        pos: at,
        stream: true,
    };
    let parsed = match bytes.get(at) {
        Some(b'-' | b'0'..=b'9') => scanner.number(),
        Some(b't') => scanner.literal(b"true"),
        Some(b'f') => scanner.literal(b"false"),
        Some(b'n') => scanner.literal(b"null"),
        _ => return false,
    };
    parsed.is_ok() && matches!(bytes.get(scanner.pos), Some(b',' | b'}' | b']'))
}

/// The content of the string that follows the colon at `colon`, when it is a string without
/// escapes.
fn string_value_after_key(bytes: &[u8], colon: usize) -> Option<Range<usize>> {
    if bytes.get(colon) != Some(&b':') || bytes.get(colon + 1) != Some(&b'"') {
        return None;
    }
    let start = colon + 2;
    let length = memchr::memchr2(b'"', b'\\', bytes.get(start..)?)?;
    (bytes[start + length] == b'"').then_some(start..start + length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The escaped bytes' positions, found one byte at a time as a lexer does (backslashes
    /// anywhere; a backslash escaped by another is not listed, as the block version leaves
    /// those out).
    fn escaped_reference(text: &[u8]) -> Vec<usize> {
        let mut found = Vec::new();
        let mut pending = false;
        for (index, &byte) in text.iter().enumerate() {
            if pending {
                if byte != b'\\' {
                    found.push(index);
                }
                pending = false;
            } else if byte == b'\\' {
                pending = true;
            }
        }
        found
    }

    /// `text` padded with `a` to whole blocks.
    fn padded(text: &[u8]) -> Vec<u8> {
        let mut blocks = text.to_vec();
        blocks.resize(text.len().div_ceil(64) * 64, b'a');
        blocks
    }

    /// The escaped bytes' positions found block by block, carrying from one to the next.
    fn escaped_by_blocks(blocks: &[u8]) -> Vec<usize> {
        let mut carry = 0;
        let mut found = Vec::new();
        for (index, block) in blocks.chunks_exact(64).enumerate() {
            let block = <&[u8; 64]>::try_from(block).expect("64 bytes");
            let backslash = classify_bytes(block).backslash;
            found.extend(positions(escaped(backslash, &mut carry), index * 64));
        }
        found
    }

    proptest! {
        #[test]
        fn escapes_are_found_across_blocks(
            text in proptest::collection::vec(prop_oneof![Just(b'\\'), Just(b'"'), Just(b'a')], 0..256)
        ) {
            let blocks = padded(&text);
            prop_assert_eq!(escaped_by_blocks(&blocks), escaped_reference(&blocks));
        }

        #[test]
        fn simd_classes_equal_the_bytes(block in proptest::array::uniform32(any::<u8>()), more in proptest::array::uniform32(any::<u8>())) {
            let mut whole = [0u8; 64];
            whole[..32].copy_from_slice(&block);
            whole[32..].copy_from_slice(&more);
            let fast = classify(&whole);
            let slow = classify_bytes(&whole);
            prop_assert_eq!(fast.quote, slow.quote);
            prop_assert_eq!(fast.backslash, slow.backslash);
            prop_assert_eq!(fast.colon, slow.colon);
            prop_assert_eq!(fast.comma, slow.comma);
            prop_assert_eq!(fast.open, slow.open);
            prop_assert_eq!(fast.close, slow.close);
            prop_assert_eq!(fast.control, slow.control);
        }
    }

    #[test]
    fn escapes_in_one_block_match_a_lexer() {
        for text in [
            &br#"a\"b\\"c\\\"d"#[..],
            br#"\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\""#,
            br#"\u00e9\n\t"#,
        ] {
            let blocks = padded(&text[..text.len().min(64)]);
            assert_eq!(
                escaped_by_blocks(&blocks),
                escaped_reference(&blocks),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
