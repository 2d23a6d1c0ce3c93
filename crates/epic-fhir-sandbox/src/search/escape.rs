//! Splitting search values on FHIR's separators while honouring its escapes.
//!
//! FHIR reserves `,` (OR between values), `|` (token system/code and quantity parts) and `$`
//! (composite parameters) inside parameter values, and escapes them with a backslash:
//! `\,` `\|` `\$` and `\\`. Splitting therefore works on the raw text (escapes still in
//! place) and unescaping happens last, on each part.
//!
//! A backslash before any other character, or at the very end, is kept literally: such
//! input is not valid FHIR escaping, and keeping it is the reading least likely to surprise.

/// Splits `raw` on every unescaped occurrence of `separator`, returning the raw parts with
/// their escapes still in place.
pub(crate) fn split_unescaped(raw: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut chars = raw.char_indices();
    while let Some((position, c)) = chars.next() {
        if c == '\\' {
            // The escaped character never separates, whatever it is.
            chars.next();
        } else if c == separator {
            parts.push(&raw[start..position]);
            start = position + separator.len_utf8();
        }
    }
    parts.push(&raw[start..]);
    parts
}

/// Splits `raw` at its first unescaped `separator`, if any.
pub(crate) fn split_first_unescaped(raw: &str, separator: char) -> Option<(&str, &str)> {
    let mut chars = raw.char_indices();
    while let Some((position, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == separator {
            return Some((&raw[..position], &raw[position + separator.len_utf8()..]));
        }
    }
    None
}

/// Removes FHIR escapes from one raw part: `\,` `\|` `\$` `\\` become the bare character.
pub(crate) fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some(&next @ (',' | '|' | '$' | '\\')) => {
                    out.push(next);
                    chars.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Escapes a literal value the way a FHIR client must before joining values.
    fn escape(value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        for c in value.chars() {
            if matches!(c, ',' | '|' | '$' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    fn split_values(raw: &str) -> Vec<String> {
        split_unescaped(raw, ',')
            .into_iter()
            .map(unescape)
            .collect()
    }

    #[test]
    fn splits_on_plain_commas() {
        assert_eq!(split_values("a,b,c"), ["a", "b", "c"]);
        assert_eq!(split_values("single"), ["single"]);
        assert_eq!(split_values("a,,b"), ["a", "", "b"]);
        assert_eq!(split_values(""), [""]);
    }

    #[test]
    fn escaped_separators_do_not_split() {
        assert_eq!(split_values(r"a\,b"), ["a,b"]);
        assert_eq!(split_values(r"a\,b,c"), ["a,b", "c"]);
        assert_eq!(split_values(r"x\|y\$z"), ["x|y$z"]);
        // An escaped backslash does not escape the comma after it.
        assert_eq!(split_values(r"a\\,b"), [r"a\", "b"]);
    }

    #[test]
    fn other_backslashes_are_kept() {
        assert_eq!(split_values(r"a\nb"), [r"a\nb"]);
        assert_eq!(split_values(r"trailing\"), [r"trailing\"]);
    }

    #[test]
    fn first_unescaped_pipe() {
        assert_eq!(split_first_unescaped("s|c", '|'), Some(("s", "c")));
        assert_eq!(split_first_unescaped("|c", '|'), Some(("", "c")));
        assert_eq!(split_first_unescaped("s|", '|'), Some(("s", "")));
        assert_eq!(split_first_unescaped(r"a\|b|c", '|'), Some((r"a\|b", "c")));
        assert_eq!(split_first_unescaped(r"a\|b", '|'), None);
        assert_eq!(split_first_unescaped("s|c|d", '|'), Some(("s", "c|d")));
    }

    proptest! {
        #[test]
        fn escaped_values_round_trip(values in proptest::collection::vec(".*", 1..6)) {
            let joined = values.iter().map(|v| escape(v)).collect::<Vec<_>>().join(",");
            prop_assert_eq!(split_values(&joined), values);
        }

        #[test]
        fn escaped_token_parts_round_trip(system in ".*", code in ".*") {
            let raw = format!("{}|{}", escape(&system), escape(&code));
            let (s, c) = split_first_unescaped(&raw, '|').expect("an unescaped pipe is present");
            prop_assert_eq!(unescape(s), system);
            prop_assert_eq!(unescape(c), code);
        }

        #[test]
        fn splitting_never_loses_text(raw in r"[a-c,\\|$]{0,24}") {
            // Joining the raw parts with the separator gives back the input exactly.
            let parts = split_unescaped(&raw, ',');
            prop_assert_eq!(parts.join(","), raw);
        }
    }
}
