//! Search parameters: typed helpers for FHIR's parameter kinds, with FHIR escaping.
//!
//! FHIR reserves `,` (OR), `|` (system separator), `$` (composite separator) and `\` in
//! parameter values; a literal one is escaped with a backslash. The typed helpers escape their
//! inputs; [`SearchParams::raw`] passes a value through untouched.
//!
//! ```
//! use epic_fhir::search::{DatePrefix, SearchParams};
//!
//! let params = SearchParams::new()
//!     .reference("patient", "erXuFYUfucBZaryVksYEcMg3")
//!     .token("category", Some("http://terminology.hl7.org/CodeSystem/observation-category"), "vital-signs")
//!     .date("date", DatePrefix::Ge, "2024-01-01")
//!     .sort_desc("date")
//!     .count(50);
//! assert_eq!(
//!     params.to_query(),
//!     "patient=erXuFYUfucBZaryVksYEcMg3\
//!      &category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Cvital-signs\
//!      &date=ge2024-01-01&_sort=-date&_count=50"
//! );
//! ```

use std::fmt;

/// Escapes FHIR's reserved characters (`\`, `,`, `|`, `$`) in a search value.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '|' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The comparison prefixes of date, number and quantity parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatePrefix {
    /// Equal: the value's range lies within the parameter's.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
    /// Greater or equal.
    Ge,
    /// Less or equal.
    Le,
    /// Starts after.
    Sa,
    /// Ends before.
    Eb,
    /// Approximately.
    Ap,
}

impl DatePrefix {
    /// The two-letter prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            DatePrefix::Eq => "eq",
            DatePrefix::Ne => "ne",
            DatePrefix::Gt => "gt",
            DatePrefix::Lt => "lt",
            DatePrefix::Ge => "ge",
            DatePrefix::Le => "le",
            DatePrefix::Sa => "sa",
            DatePrefix::Eb => "eb",
            DatePrefix::Ap => "ap",
        }
    }
}

impl fmt::Display for DatePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `_summary` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// Only the elements marked as summary.
    True,
    /// Only text, id and meta.
    Text,
    /// Everything but the narrative.
    Data,
    /// Only the total count.
    Count,
    /// Everything.
    False,
}

impl Summary {
    fn as_str(self) -> &'static str {
        match self {
            Summary::True => "true",
            Summary::Text => "text",
            Summary::Data => "data",
            Summary::Count => "count",
            Summary::False => "false",
        }
    }
}

/// The parameters of a search, in order. Repeating a parameter ANDs the values; the `any_of`
/// helpers OR them in one value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchParams {
    pairs: Vec<(String, String)>,
}

impl SearchParams {
    /// No parameters.
    pub fn new() -> Self {
        SearchParams::default()
    }

    /// Adds `name=value` with `value` passed through as written (no escaping): for values that
    /// already use FHIR syntax, such as `ge2024-01-01,le2024-12-31` or a `system|code` token.
    #[must_use]
    pub fn raw(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.pairs.push((name.into(), value.into()));
        self
    }

    /// A string parameter (starts-with, case-insensitive on the server), escaped.
    #[must_use]
    pub fn string(self, name: &str, value: &str) -> Self {
        self.raw(name, escape(value))
    }

    /// A string parameter with `:exact`.
    #[must_use]
    pub fn string_exact(self, name: &str, value: &str) -> Self {
        self.raw(format!("{name}:exact"), escape(value))
    }

    /// A string parameter with `:contains`.
    #[must_use]
    pub fn string_contains(self, name: &str, value: &str) -> Self {
        self.raw(format!("{name}:contains"), escape(value))
    }

    /// A token: `code`, or `system|code` when a system is given. Pass `Some("")` for `|code`
    /// (a code with no system).
    #[must_use]
    pub fn token(self, name: &str, system: Option<&str>, code: &str) -> Self {
        let value = match system {
            Some(system) => format!("{}|{}", escape(system), escape(code)),
            None => escape(code),
        };
        self.raw(name, value)
    }

    /// A token matching any code of `system` (`system|`).
    #[must_use]
    pub fn token_system(self, name: &str, system: &str) -> Self {
        self.raw(name, format!("{}|", escape(system)))
    }

    /// A token matching any of several codes (OR), each `(system, code)`.
    #[must_use]
    pub fn token_any_of(self, name: &str, codes: &[(Option<&str>, &str)]) -> Self {
        let value = codes
            .iter()
            .map(|(system, code)| match system {
                Some(system) => format!("{}|{}", escape(system), escape(code)),
                None => escape(code),
            })
            .collect::<Vec<_>>()
            .join(",");
        self.raw(name, value)
    }

    /// A date parameter with a prefix, e.g. `date=ge2024-01-01`. `value` is a FHIR date,
    /// dateTime or instant at any precision.
    #[must_use]
    pub fn date(self, name: &str, prefix: DatePrefix, value: &str) -> Self {
        let value = if prefix == DatePrefix::Eq {
            escape(value)
        } else {
            format!("{prefix}{}", escape(value))
        };
        self.raw(name, value)
    }

    /// A reference: an id, `Type/id`, or an absolute URL.
    #[must_use]
    pub fn reference(self, name: &str, reference: &str) -> Self {
        self.raw(name, escape(reference))
    }

    /// A quantity: `[prefix]number|system|code` (system and code optional).
    #[must_use]
    pub fn quantity(
        self,
        name: &str,
        prefix: DatePrefix,
        number: f64,
        system: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        let mut value = if prefix == DatePrefix::Eq {
            number.to_string()
        } else {
            format!("{prefix}{number}")
        };
        if system.is_some() || code.is_some() {
            value.push('|');
            value.push_str(&escape(system.unwrap_or("")));
            value.push('|');
            value.push_str(&escape(code.unwrap_or("")));
        }
        self.raw(name, value)
    }

    /// `_id`, one or more (OR).
    #[must_use]
    pub fn ids(self, ids: &[&str]) -> Self {
        let value = ids
            .iter()
            .map(|id| escape(id))
            .collect::<Vec<_>>()
            .join(",");
        self.raw("_id", value)
    }

    /// `_count`: the page size the server should use.
    #[must_use]
    pub fn count(self, count: u32) -> Self {
        self.raw("_count", count.to_string())
    }

    /// Adds an ascending `_sort` key (several calls make a multi-key sort).
    #[must_use]
    pub fn sort_asc(self, key: &str) -> Self {
        self.push_sort(key.to_owned())
    }

    /// Adds a descending `_sort` key.
    #[must_use]
    pub fn sort_desc(self, key: &str) -> Self {
        self.push_sort(format!("-{key}"))
    }

    fn push_sort(mut self, key: String) -> Self {
        if let Some((_, existing)) = self.pairs.iter_mut().find(|(name, _)| name == "_sort") {
            existing.push(',');
            existing.push_str(&key);
            return self;
        }
        self.pairs.push(("_sort".to_owned(), key));
        self
    }

    /// `_include`, e.g. `Observation:patient` or `MedicationRequest:requester:Practitioner`.
    #[must_use]
    pub fn include(self, spec: &str) -> Self {
        self.raw("_include", spec)
    }

    /// `_revinclude`, e.g. `Provenance:target`.
    #[must_use]
    pub fn revinclude(self, spec: &str) -> Self {
        self.raw("_revinclude", spec)
    }

    /// `_elements`: only these top-level elements.
    #[must_use]
    pub fn elements(self, elements: &[&str]) -> Self {
        self.raw("_elements", elements.join(","))
    }

    /// `_summary`.
    #[must_use]
    pub fn summary(self, summary: Summary) -> Self {
        self.raw("_summary", summary.as_str())
    }

    /// The parameters as `(name, value)` pairs, unencoded.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The `application/x-www-form-urlencoded` query string.
    pub fn to_query(&self) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.pairs {
            serializer.append_pair(name, value);
        }
        serializer.finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SearchParams {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        SearchParams {
            pairs: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Splits on unescaped `sep`, then unescapes: the reverse of what a server does.
    fn split_unescape(value: &str, sep: char) -> Vec<String> {
        let mut parts = vec![String::new()];
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    parts.last_mut().expect("part").push(next);
                }
            } else if c == sep {
                parts.push(String::new());
            } else {
                parts.last_mut().expect("part").push(c);
            }
        }
        parts
    }

    #[test]
    fn escapes_reserved_characters() {
        assert_eq!(escape(r"a,b|c$d\e"), r"a\,b\|c\$d\\e");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn typed_helpers() {
        let p = SearchParams::new()
            .token("code", Some("http://loinc.org"), "8480-6")
            .token("identifier", Some(""), "E4007")
            .token_system("category", "http://x")
            .token_any_of("status", &[(None, "final"), (None, "amended")])
            .date("date", DatePrefix::Eq, "2024-01")
            .date("date", DatePrefix::Lt, "2025")
            .quantity(
                "value-quantity",
                DatePrefix::Gt,
                5.4,
                Some("http://unitsofmeasure.org"),
                Some("mg"),
            )
            .string("family", "O'Brien, Jr")
            .string_exact("given", "Ann")
            .sort_asc("status")
            .sort_desc("date")
            .ids(&["a", "b"])
            .summary(Summary::Count)
            .elements(&["id", "status"]);
        let pairs: Vec<(&str, &str)> = p
            .pairs()
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("code", "http://loinc.org|8480-6"),
                ("identifier", "|E4007"),
                ("category", "http://x|"),
                ("status", "final,amended"),
                ("date", "2024-01"),
                ("date", "lt2025"),
                ("value-quantity", "gt5.4|http://unitsofmeasure.org|mg"),
                ("family", r"O'Brien\, Jr"),
                ("given:exact", "Ann"),
                ("_sort", "status,-date"),
                ("_id", "a,b"),
                ("_summary", "count"),
                ("_elements", "id,status"),
            ]
        );
    }

    proptest! {
        #[test]
        fn escaped_values_survive_the_server_split(values in proptest::collection::vec(".*", 1..5)) {
            let joined = values.iter().map(|v| escape(v)).collect::<Vec<_>>().join(",");
            prop_assert_eq!(split_unescape(&joined, ','), values);
        }

        #[test]
        fn token_parts_survive_the_server_split(system in ".*", code in ".*") {
            let p = SearchParams::new().token("code", Some(&system), &code);
            let value = &p.pairs()[0].1;
            // The server splits on the first unescaped `|`, then unescapes each side.
            let parts = split_unescape(value, '|');
            prop_assert_eq!(parts.len(), 2);
            prop_assert_eq!(&parts[0], &system);
            prop_assert_eq!(&parts[1], &code);
        }
    }
}
