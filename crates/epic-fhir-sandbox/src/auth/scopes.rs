//! SMART resource scopes, in v1 (`system/Patient.read`) and v2 (`system/Patient.rs`) syntax:
//! `system/` for Backend Services, and `patient/` and `user/` for apps a person launches.

use std::fmt;

/// One interaction a scope can permit (SMART v2 letters: c r u d s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `c`: create.
    Create,
    /// `r`: read and vread.
    Read,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search.
    Search,
}

impl Permission {
    fn bit(self) -> u8 {
        match self {
            Permission::Create => 1,
            Permission::Read => 2,
            Permission::Update => 4,
            Permission::Delete => 8,
            Permission::Search => 16,
        }
    }
}

/// Whose data a resource scope reaches (the part before the `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    /// `system/`: everything the client is registered for (Backend Services).
    System,
    /// `user/`: what the signed-in user may see (for a patient user: their own record).
    User,
    /// `patient/`: the compartment of the patient in context.
    Patient,
}

impl ScopeContext {
    /// The prefix as written, `system`, `user` or `patient`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeContext::System => "system",
            ScopeContext::User => "user",
            ScopeContext::Patient => "patient",
        }
    }
}

/// One parsed resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Whose data the scope reaches.
    pub context: ScopeContext,
    /// The resource type, or `None` for `*`.
    pub resource_type: Option<String>,
    permissions: u8,
    /// The scope as written (v2 constraints such as `?category=...` included).
    pub text: String,
}

impl Scope {
    /// Parses `system/Type.read`, `system/*.write`, `system/Type.cruds`, `system/Type.rs?x=y`.
    /// Only `system/` scopes make sense for Backend Services.
    pub fn parse(text: &str) -> Result<Scope, String> {
        if !text.starts_with("system/") {
            return Err(format!("scope `{text}` is not a system/ scope"));
        }
        Scope::parse_any(text)
    }

    /// Parses a resource scope of any context: `system/`, `user/` or `patient/`, in v1 or v2
    /// syntax (`patient/Observation.rs`, `user/*.read`).
    pub fn parse_any(text: &str) -> Result<Scope, String> {
        let (context, rest) = if let Some(rest) = text.strip_prefix("system/") {
            (ScopeContext::System, rest)
        } else if let Some(rest) = text.strip_prefix("user/") {
            (ScopeContext::User, rest)
        } else if let Some(rest) = text.strip_prefix("patient/") {
            (ScopeContext::Patient, rest)
        } else {
            return Err(format!(
                "scope `{text}` is not a resource scope (system/, user/ or patient/)"
            ));
        };
        let (resource, permission) = rest
            .split_once('.')
            .ok_or_else(|| format!("scope `{text}` has no `.permission`"))?;
        if resource.is_empty()
            || !(resource == "*" || resource.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(format!("scope `{text}` names no valid resource type"));
        }
        // SMART v2 constraints (`?category=...`) narrow a scope; the sandbox grants the scope as
        // written and applies the type-level permission.
        let permission = permission.split('?').next().unwrap_or_default();
        let permissions = match permission {
            "read" => Permission::Read.bit() | Permission::Search.bit(),
            "write" => Permission::Create.bit() | Permission::Update.bit() | Permission::Delete.bit(),
            "*" => 0x1f,
            letters => parse_v2_letters(letters).ok_or_else(|| {
                format!("scope `{text}` has an invalid permission `{letters}`: use read, write, *, or v2 letters in the order c r u d s")
            })?,
        };
        Ok(Scope {
            context,
            resource_type: (resource != "*").then(|| resource.to_owned()),
            permissions,
            text: text.to_owned(),
        })
    }

    /// Whether this scope permits `permission` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|t| t == resource_type)
            && self.permissions & permission.bit() != 0
    }

    /// This scope with only the permissions also in `mask` (a bit set of [`Permission`]s), or
    /// `None` when nothing is left. The text is rewritten in v2 letters when it changes.
    pub(crate) fn restricted(&self, mask: u8) -> Option<Scope> {
        let permissions = self.permissions & mask;
        if permissions == 0 {
            return None;
        }
        if permissions == self.permissions {
            return Some(self.clone());
        }
        let letters: String = [
            ('c', Permission::Create),
            ('r', Permission::Read),
            ('u', Permission::Update),
            ('d', Permission::Delete),
            ('s', Permission::Search),
        ]
        .iter()
        .filter(|(_, p)| permissions & p.bit() != 0)
        .map(|(c, _)| *c)
        .collect();
        Some(Scope {
            context: self.context,
            resource_type: self.resource_type.clone(),
            permissions,
            text: format!(
                "{}/{}.{letters}",
                self.context.as_str(),
                self.resource_type.as_deref().unwrap_or("*")
            ),
        })
    }

    /// The bit set of read and search, the permissions user-facing apps are granted here.
    pub(crate) fn read_search_mask() -> u8 {
        Permission::Read.bit() | Permission::Search.bit()
    }

    /// Whether everything this scope permits is also permitted by `granted`.
    fn covered_by(&self, granted: &ScopeSet) -> bool {
        let all = [
            Permission::Create,
            Permission::Read,
            Permission::Update,
            Permission::Delete,
            Permission::Search,
        ];
        all.iter()
            .filter(|p| self.permissions & p.bit() != 0)
            .all(|&p| match &self.resource_type {
                Some(t) => granted.allows(t, p),
                None => granted
                    .scopes
                    .iter()
                    .any(|g| g.resource_type.is_none() && g.permissions & p.bit() != 0),
            })
    }
}

/// v2 letters must be a non-empty subsequence of `cruds`, in that order.
fn parse_v2_letters(letters: &str) -> Option<u8> {
    let order = [
        ('c', Permission::Create),
        ('r', Permission::Read),
        ('u', Permission::Update),
        ('d', Permission::Delete),
        ('s', Permission::Search),
    ];
    let mut bits = 0u8;
    let mut position = 0;
    for ch in letters.chars() {
        let offset = order[position..].iter().position(|(c, _)| *c == ch)?;
        bits |= order[position + offset].1.bit();
        position += offset + 1;
    }
    (bits != 0).then_some(bits)
}

/// A set of scopes: what a client may ask for, or what a token carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

impl ScopeSet {
    /// Parses a space-separated scope string.
    pub fn parse(text: &str) -> Result<ScopeSet, String> {
        let scopes = text
            .split_whitespace()
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScopeSet { scopes })
    }

    /// Builds a set from parsed scopes.
    pub fn from_scopes(scopes: Vec<Scope>) -> ScopeSet {
        ScopeSet { scopes }
    }

    /// The scopes, in order.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The contexts of the scopes that permit `permission` on `resource_type`.
    pub fn contexts_allowing<'a>(
        &'a self,
        resource_type: &'a str,
        permission: Permission,
    ) -> impl Iterator<Item = ScopeContext> + 'a {
        self.scopes
            .iter()
            .filter(move |s| s.allows(resource_type, permission))
            .map(|s| s.context)
    }

    /// `system/*.read`: read and search of every type, the default grant of a sandbox client.
    pub fn read_all() -> ScopeSet {
        ScopeSet::parse("system/*.read").unwrap_or_default()
    }

    /// Whether any scope permits `permission` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        self.scopes
            .iter()
            .any(|s| s.allows(resource_type, permission))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// The subset of `requested` this set covers, or the requested scopes it does not cover.
    pub fn grant(&self, requested: &ScopeSet) -> Result<ScopeSet, Vec<String>> {
        let denied: Vec<String> = requested
            .scopes
            .iter()
            .filter(|s| !s.covered_by(self))
            .map(|s| s.text.clone())
            .collect();
        if denied.is_empty() {
            Ok(requested.clone())
        } else {
            Err(denied)
        }
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&scope.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_syntax() {
        let v1 = ScopeSet::parse("system/Patient.read system/Observation.write").expect("v1");
        assert!(v1.allows("Patient", Permission::Read));
        assert!(v1.allows("Patient", Permission::Search));
        assert!(!v1.allows("Patient", Permission::Create));
        assert!(v1.allows("Observation", Permission::Create));
        assert!(!v1.allows("Observation", Permission::Read));
        let v2 = ScopeSet::parse(
            "system/Patient.rs system/Observation.c system/Condition.r?category=problem-list-item",
        )
        .expect("v2");
        assert!(v2.allows("Patient", Permission::Search));
        assert!(v2.allows("Observation", Permission::Create));
        assert!(!v2.allows("Observation", Permission::Search));
        assert!(v2.allows("Condition", Permission::Read));
        assert!(!v2.allows("Condition", Permission::Search));
        let star = ScopeSet::parse("system/*.cruds").expect("star");
        assert!(star.allows("Anything", Permission::Delete));
    }

    #[test]
    fn invalid_scopes_are_named() {
        for bad in [
            "patient/Patient.read",
            "system/Patient",
            "system/.read",
            "system/Patient.rc",
            "system/Patient.x",
            "system/Pa-tient.read",
        ] {
            let err = ScopeSet::parse(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn grant_checks_coverage() {
        let allowed =
            ScopeSet::parse("system/Patient.read system/Observation.rs").expect("allowed");
        assert!(
            allowed
                .grant(&ScopeSet::parse("system/Patient.rs").expect("req"))
                .is_ok()
        );
        assert!(
            allowed
                .grant(&ScopeSet::parse("system/Observation.read").expect("req"))
                .is_ok()
        );
        let denied = allowed
            .grant(
                &ScopeSet::parse("system/Patient.read system/Condition.read system/*.read")
                    .expect("req"),
            )
            .expect_err("beyond grant");
        assert_eq!(denied, vec!["system/Condition.read", "system/*.read"]);
        assert!(
            ScopeSet::read_all()
                .grant(&ScopeSet::parse("system/Condition.read system/*.rs").expect("req"))
                .is_ok()
        );
        assert!(
            ScopeSet::read_all()
                .grant(&ScopeSet::parse("system/Condition.c").expect("req"))
                .is_err()
        );
    }
}
