//! The formats of FHIR's primitive types (R4 §2.24.0.1), as checks on a JSON value.

use super::dom::Node;
use super::tables::Prim;

/// Checks that `node` is a valid JSON representation of `prim`; the error says why not.
pub(crate) fn check(prim: Prim, node: &Node<'_>) -> Result<(), String> {
    match prim {
        Prim::Boolean => match node {
            Node::Bool(_) => Ok(()),
            other => Err(format!("expected a boolean, found {}", other.kind())),
        },
        Prim::Integer | Prim::UnsignedInt | Prim::PositiveInt => {
            let Node::Number(text) = node else {
                return Err(format!("expected a number, found {}", node.kind()));
            };
            let value: i64 = text
                .parse()
                .map_err(|_| format!("`{text}` is not an integer"))?;
            let (low, name) = match prim {
                Prim::Integer => (i64::from(i32::MIN), "an integer"),
                Prim::UnsignedInt => (0, "an unsignedInt"),
                _ => (1, "a positiveInt"),
            };
            if value < low || value > i64::from(i32::MAX) {
                return Err(format!(
                    "{text} is out of range for {name} ({low} to 2147483647)"
                ));
            }
            Ok(())
        }
        // The JSON grammar (already checked) is the decimal grammar.
        Prim::Decimal => match node {
            Node::Number(_) => Ok(()),
            other => Err(format!("expected a number, found {}", other.kind())),
        },
        _ => {
            let Node::String(text) = node else {
                return Err(format!("expected a string, found {}", node.kind()));
            };
            check_text(prim, text)
        }
    }
}

/// Checks the text of a string-valued primitive.
fn check_text(prim: Prim, text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty strings are not allowed (leave the element out)".to_owned());
    }
    let fail = |what: &str| {
        Err(format!(
            "`{}` is not a valid {}: {what}",
            excerpt(text),
            prim.code()
        ))
    };
    match prim {
        Prim::String | Prim::Markdown => {
            if text.trim().is_empty() {
                return fail("it has only whitespace");
            }
            Ok(())
        }
        Prim::Code => {
            if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
                return fail("leading or trailing whitespace");
            }
            if text.contains("  ") || text.contains(['\t', '\n', '\r']) {
                return fail("only single spaces may separate its words");
            }
            Ok(())
        }
        Prim::Id => {
            if text.len() > 64 {
                return fail("longer than 64 characters");
            }
            if !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return fail("only letters, digits, `-` and `.` are allowed");
            }
            Ok(())
        }
        // FHIR's grammar for all three is `\S*`; a url may be relative (Attachment.url names
        // `Binary/123` relative to the server, as Epic's DocumentReferences do).
        Prim::Uri | Prim::Url | Prim::Canonical => {
            if text.contains(char::is_whitespace) {
                return fail("whitespace is not allowed");
            }
            Ok(())
        }
        Prim::Oid => {
            let Some(rest) = text.strip_prefix("urn:oid:") else {
                return fail("an oid starts with `urn:oid:`");
            };
            let mut parts = rest.split('.');
            let first_ok = matches!(parts.next(), Some("0" | "1" | "2"));
            let others: Vec<&str> = parts.collect();
            let arcs_ok = !others.is_empty()
                && others.iter().all(|arc| {
                    !arc.is_empty()
                        && arc.bytes().all(|b| b.is_ascii_digit())
                        && (arc.len() == 1 || !arc.starts_with('0'))
                });
            if first_ok && arcs_ok {
                Ok(())
            } else {
                fail("expected `urn:oid:` and dotted numbers starting with 0, 1 or 2")
            }
        }
        Prim::Uuid => {
            let Some(rest) = text.strip_prefix("urn:uuid:") else {
                return fail("a uuid starts with `urn:uuid:`");
            };
            let groups: Vec<&str> = rest.split('-').collect();
            let lengths_ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
            if lengths_ok
                && groups
                    .iter()
                    .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                Ok(())
            } else {
                fail("expected `urn:uuid:` and 8-4-4-4-12 hexadecimal digits")
            }
        }
        Prim::Base64Binary => check_base64(text).or_else(fail),
        Prim::Date | Prim::DateTime | Prim::Instant | Prim::Time => {
            crate::primitives::check_temporal(prim.code(), text).or_else(fail)
        }
        Prim::Xhtml => {
            if text.trim_start().starts_with("<div") && text.trim_end().ends_with("</div>") {
                Ok(())
            } else {
                fail("the narrative must be one XHTML `<div>` element")
            }
        }
        Prim::Boolean | Prim::Integer | Prim::UnsignedInt | Prim::PositiveInt | Prim::Decimal => {
            Ok(())
        }
    }
}

/// Checks base64 (RFC 4648, with padding; whitespace is tolerated as FHIR does).
fn check_base64(text: &str) -> Result<(), &'static str> {
    let data: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if data.len() % 4 != 0 {
        return Err("its length is not a multiple of 4");
    }
    let padding = data.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return Err("too much `=` padding");
    }
    let body = &data[..data.len() - padding];
    if body
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        Ok(())
    } else {
        Err("only A-Z, a-z, 0-9, `+`, `/` and `=` padding are allowed")
    }
}

/// The first 60 characters of a value, for messages.
fn excerpt(text: &str) -> String {
    let short: String = text.chars().take(60).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn string(text: &str) -> Node<'_> {
        Node::String(Cow::Borrowed(text))
    }

    #[test]
    fn string_formats() {
        for (prim, good, bad) in [
            (Prim::Id, "eq081-VQEgP8drUUqCWzHfw3", "a_b"),
            (Prim::Code, "entered-in-error", " final"),
            (Prim::Code, "two words", "two  spaces"),
            (Prim::Uri, "http://loinc.org", "has space"),
            (Prim::Url, "Binary/e3x", "https://x.example/a b"),
            (Prim::Oid, "urn:oid:1.2.840.114350", "urn:oid:3.1"),
            (
                Prim::Uuid,
                "urn:uuid:1c0ae5d4-8e0c-4f49-9d75-59ab2bcb8a88",
                "urn:uuid:xyz",
            ),
            (Prim::Base64Binary, "SGVsbG8=", "SGVsbG8"),
            (Prim::Date, "2024-02-29", "2023-02-29"),
            (
                Prim::DateTime,
                "2024-03-01T10:00:00-05:00",
                "2024-03-01T10:00",
            ),
            (Prim::Instant, "2024-03-01T10:00:00Z", "2024-03-01"),
            (Prim::Time, "23:59:60", "24:00:00"),
            (Prim::String, "x", "  "),
            (
                Prim::Xhtml,
                "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>",
                "plain",
            ),
        ] {
            assert!(check(prim, &string(good)).is_ok(), "{good} as {prim:?}");
            let error = check(prim, &string(bad)).expect_err(bad);
            assert!(error.contains(prim.code()), "{error}");
        }
        assert!(check(Prim::String, &string("")).is_err());
        assert!(check(Prim::Id, &string(&"a".repeat(65))).is_err());
    }

    #[test]
    fn numbers_and_booleans() {
        assert!(check(Prim::Integer, &Node::Number("-5")).is_ok());
        assert!(check(Prim::Integer, &Node::Number("2147483648")).is_err());
        assert!(check(Prim::Integer, &Node::Number("1.0")).is_err());
        assert!(check(Prim::UnsignedInt, &Node::Number("0")).is_ok());
        assert!(check(Prim::UnsignedInt, &Node::Number("-1")).is_err());
        assert!(check(Prim::PositiveInt, &Node::Number("0")).is_err());
        assert!(check(Prim::Decimal, &Node::Number("1.50")).is_ok());
        assert!(check(Prim::Decimal, &string("1.5")).is_err());
        assert!(check(Prim::Boolean, &string("true")).is_err());
        assert!(check(Prim::Boolean, &Node::Bool(false)).is_ok());
    }
}
