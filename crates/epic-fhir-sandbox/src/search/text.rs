//! Text normalisation for string search: case folding and accent folding.
//!
//! FHIR string search is "case- and accent-insensitive". Without a Unicode normalisation
//! crate we fold the characters that matter in practice: the Latin-1 Supplement and Latin
//! Extended-A letters (the accents of Western and Central European names) and the
//! combining diacritical marks U+0300..U+036F, which are dropped so that decomposed input
//! ("e" followed by U+0301) folds the same way as precomposed input ("é").

/// Returns `s` lowercased with accents removed, the form stored in the string index and
/// compared against normalised query values.
pub(crate) fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for upper in s.chars() {
        for c in upper.to_lowercase() {
            push_folded(c, &mut out);
        }
    }
    out
}

/// Appends the accent-folded form of one lowercase character.
fn push_folded(c: char, out: &mut String) {
    // Combining marks carry only the accent of the preceding base letter.
    if ('\u{0300}'..='\u{036f}').contains(&c) {
        return;
    }
    if c.is_ascii() {
        out.push(c);
        return;
    }
    let folded: &str = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' | 'ĸ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ſ' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        other => {
            out.push(other);
            return;
        }
    };
    out.push_str(folded);
}

/// True when `needle` (already normalised) occurs in `haystack` (already normalised) at the
/// start of a word: at position 0 or right after a character that is not alphanumeric.
///
/// This is the rule for the token `:text` modifier, so that `code:text=pressure` finds
/// "Systolic blood pressure" while `code:text=ress` does not.
pub(crate) fn word_prefix_match(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let mut previous_is_word = false;
    for (position, c) in haystack.char_indices() {
        if !previous_is_word && haystack[position..].starts_with(needle) {
            return true;
        }
        previous_is_word = c.is_alphanumeric();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_accents() {
        assert_eq!(normalize("Véliz"), "veliz");
        assert_eq!(normalize("ÉMILE Zoë"), "emile zoe");
        assert_eq!(normalize("Straße"), "strasse");
        assert_eq!(normalize("Łukasz Żółć"), "lukasz zolc");
        assert_eq!(normalize("Ærø"), "aero");
        assert_eq!(normalize("plain ascii 123"), "plain ascii 123");
    }

    #[test]
    fn drops_combining_marks() {
        // "e" + COMBINING ACUTE ACCENT folds like the precomposed "é".
        assert_eq!(normalize("Jose\u{0301}"), normalize("José"));
    }

    #[test]
    fn keeps_characters_outside_the_latin_tables() {
        assert_eq!(normalize("Ωμέγα"), "ωμέγα");
    }

    #[test]
    fn word_prefix_matching() {
        assert!(word_prefix_match("systolic blood pressure", "pressure"));
        assert!(word_prefix_match("systolic blood pressure", "blood pr"));
        assert!(word_prefix_match("systolic blood pressure", "sys"));
        assert!(!word_prefix_match("systolic blood pressure", "ressure"));
        assert!(word_prefix_match("body mass index (bmi)", "bmi"));
        assert!(!word_prefix_match("", "x"));
        assert!(word_prefix_match("anything", ""));
    }
}
