//! Evaluation of parsed FHIRPath over one resource on a JSON tape.
//!
//! Without a FHIR type model, two rules stand in for one: a choice element `value` is found
//! as a member `value` followed by a FHIR type name (`valueQuantity`), which also gives the
//! item its type for `ofType()`; other items get their type from their JSON shape (string,
//! number, boolean, or a resource's `resourceType`). Strings compared with dates, date-times
//! or times are read as such, so `birthDate = @1978-03-12` works as FHIRPath says.

use std::borrow::Cow;
use std::cmp::Ordering;

use smallvec::{SmallVec, smallvec};

use super::decimal::Decimal;
use super::parse::{BinOp, Expr, Func};
use super::temporal::{Temporal, TemporalKind};
use crate::json::{Doc, Kind, NodeId};

/// One item of a collection.
#[derive(Debug, Clone)]
pub(crate) enum Item<'e> {
    /// A node of the resource, with the FHIR type named by its choice suffix if it had one
    /// (`Quantity` for `valueQuantity`).
    Node(NodeId, Option<&'e str>),
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(Cow<'e, str>),
    Temporal(Temporal),
}

/// A FHIRPath collection.
/// A FHIRPath collection. Most hold zero or one item (a member of a resource, a literal, a
/// boolean), so one lives inline and evaluation allocates only for larger ones (one inline
/// item measured faster than two: results are moved up the recursion by value).
pub(crate) type Collection<'e> = SmallVec<[Item<'e>; 1]>;

/// Why an expression could not be evaluated on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EvalError(pub(crate) String);

type Result<T> = std::result::Result<T, EvalError>;

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(EvalError(message.into()))
}

/// What an expression is evaluated against.
#[derive(Clone, Copy)]
pub(crate) struct Env<'e> {
    pub(crate) doc: Doc<'e>,
    /// The resource (`%resource`, `getResourceKey()`).
    pub(crate) resource: NodeId,
    /// `%rowIndex`.
    pub(crate) row_index: i64,
}

/// Whether two short byte strings (member names) are equal: an inlined loop, where a call to
/// the C library's `memcmp` cost more than the comparison.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Whether a choice element's suffix (`Quantity` in `valueQuantity`) names a FHIR data type.
fn is_choice_type(suffix: &str) -> bool {
    matches!(
        suffix,
        "Base64Binary"
            | "Boolean"
            | "Canonical"
            | "Code"
            | "Date"
            | "DateTime"
            | "Decimal"
            | "Id"
            | "Instant"
            | "Integer"
            | "Integer64"
            | "Markdown"
            | "Oid"
            | "PositiveInt"
            | "String"
            | "Time"
            | "UnsignedInt"
            | "Uri"
            | "Url"
            | "Uuid"
            | "Address"
            | "Age"
            | "Annotation"
            | "Attachment"
            | "CodeableConcept"
            | "CodeableReference"
            | "Coding"
            | "ContactDetail"
            | "ContactPoint"
            | "Contributor"
            | "Count"
            | "DataRequirement"
            | "Distance"
            | "Dosage"
            | "Duration"
            | "Expression"
            | "HumanName"
            | "Identifier"
            | "Meta"
            | "Money"
            | "ParameterDefinition"
            | "Period"
            | "Quantity"
            | "Range"
            | "Ratio"
            | "RatioRange"
            | "Reference"
            | "RelatedArtifact"
            | "SampledData"
            | "Signature"
            | "Timing"
            | "TriggerDefinition"
            | "UsageContext"
    )
}

/// Whether a FHIR type name (as in `ofType(dateTime)`) names the same type as a choice
/// suffix (`DateTime`): the first letter's case differs for primitives.
fn same_type(name: &str, suffix: &str) -> bool {
    let mut a = name.chars();
    let mut b = suffix.chars();
    match (a.next(), b.next()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(&y) && a.as_str() == b.as_str(),
        _ => false,
    }
}

fn is_string_type(name: &str) -> bool {
    matches!(
        name,
        "string"
            | "String"
            | "code"
            | "id"
            | "uri"
            | "url"
            | "canonical"
            | "oid"
            | "uuid"
            | "markdown"
            | "base64Binary"
            | "date"
            | "dateTime"
            | "instant"
            | "time"
    )
}

impl<'e> Env<'e> {
    /// Evaluates `expr` with `focus` as the input collection.
    pub(crate) fn eval(&self, expr: &'e Expr, focus: &[Item<'e>]) -> Result<Collection<'e>> {
        self.eval_at(expr, focus, None)
    }

    /// Evaluates the commonest expressions (member paths and string literals) in a small
    /// function and hands the others to [`Env::eval_other`]: that one's frame is large (it
    /// matches every kind of expression), and setting it up for each step of a path cost
    /// more than the step.
    fn eval_at(
        &self,
        expr: &'e Expr,
        focus: &[Item<'e>],
        index: Option<i64>,
    ) -> Result<Collection<'e>> {
        match expr {
            Expr::Member(target, name) => {
                let mut out = Collection::new();
                match target {
                    Some(target) => {
                        let input = self.eval_at(target, focus, index)?;
                        for item in &input {
                            self.navigate(item, name, &mut out);
                        }
                    }
                    None => {
                        for item in focus {
                            self.navigate(item, name, &mut out);
                        }
                    }
                }
                Ok(out)
            }
            Expr::Str(s) => Ok(smallvec![Item::Str(Cow::Borrowed(s))]),
            _ => self.eval_other(expr, focus, index),
        }
    }

    #[inline(never)]
    fn eval_other(
        &self,
        expr: &'e Expr,
        focus: &[Item<'e>],
        index: Option<i64>,
    ) -> Result<Collection<'e>> {
        Ok(match expr {
            Expr::Empty => Collection::new(),
            Expr::Bool(b) => smallvec![Item::Bool(*b)],
            Expr::Int(n) => smallvec![Item::Int(*n)],
            Expr::Dec(d) => smallvec![Item::Dec(*d)],
            Expr::Temporal(t) => smallvec![Item::Temporal(*t)],
            Expr::This => SmallVec::from(focus),
            Expr::IndexVar => match index {
                Some(i) => smallvec![Item::Int(i)],
                None => Collection::new(),
            },
            Expr::RowIndex => smallvec![Item::Int(self.row_index)],
            Expr::Resource => smallvec![Item::Node(self.resource, None)],
            Expr::Member(..) | Expr::Str(_) => return self.eval_at(expr, focus, index),
            Expr::Call(target, func, args) => {
                let input;
                let input: &[Item<'e>] = match target {
                    Some(target) => {
                        input = self.eval_at(target, focus, index)?;
                        &input
                    }
                    None => focus,
                };
                self.call(func, args, input, focus, index)?
            }
            Expr::Index(target, position) => {
                let input = self.eval_at(target, focus, index)?;
                let position = self.eval_at(position, focus, index)?;
                match single_int(&position, "an index")? {
                    Some(i) if i >= 0 => input.into_iter().nth(i as usize).into_iter().collect(),
                    _ => Collection::new(),
                }
            }
            Expr::Neg(operand) => {
                let value = self.eval_at(operand, focus, index)?;
                match self.singleton(&value, "unary minus")? {
                    None => Collection::new(),
                    Some(Item::Int(n)) => smallvec![Item::Int(-n)],
                    Some(Item::Dec(d)) => {
                        smallvec![Item::Dec(Decimal::from_int(0).checked_sub(d).unwrap_or(d))]
                    }
                    Some(_) => return fail("unary minus needs a number"),
                }
            }
            Expr::Is(target, name) => {
                let value = self.eval_at(target, focus, index)?;
                match value.as_slice() {
                    [] => Collection::new(),
                    [item] => smallvec![Item::Bool(self.has_type(item, name))],
                    _ => return fail(format!("`is {name}` needs a single item")),
                }
            }
            Expr::As(target, name) => {
                let value = self.eval_at(target, focus, index)?;
                value
                    .into_iter()
                    .filter(|item| self.has_type(item, name))
                    .collect()
            }
            Expr::Binary(op, left, right) => self.binary(*op, left, right, focus, index)?,
        })
    }

    /// Appends the children named `name` of `item` to `out`.
    fn navigate(&self, item: &Item<'e>, name: &str, out: &mut Collection<'e>) {
        let Item::Node(node, _) = *item else {
            return;
        };
        let doc = &self.doc;
        if doc.kind(node) != Kind::Object {
            return;
        }
        let mut found = false;
        let wanted = name.as_bytes();
        let Some(&first) = wanted.first() else {
            return;
        };
        for (key, value) in doc.members(node) {
            let raw = doc.raw_bytes(key);
            // Most members differ in their first byte or their length: skip them before
            // comparing more.
            if raw.first() != Some(&first) || raw.len() < wanted.len() {
                continue;
            }
            let hint = if raw.len() == wanted.len() {
                if !same_bytes(raw, wanted) {
                    continue;
                }
                None
            } else {
                if !raw[wanted.len()].is_ascii_uppercase()
                    || !same_bytes(&raw[..wanted.len()], wanted)
                {
                    continue;
                }
                // An ASCII byte starts the suffix, so it is a character boundary.
                let suffix = &doc.raw(key)[wanted.len()..];
                if !is_choice_type(suffix) {
                    continue;
                }
                Some(suffix)
            };
            found = true;
            match doc.kind(value) {
                Kind::Array => out.extend(
                    doc.elements(value)
                        .filter(|&e| doc.kind(e) != Kind::Null)
                        .map(|e| Item::Node(e, hint)),
                ),
                Kind::Null => {}
                _ => out.push(Item::Node(value, hint)),
            }
            if hint.is_none() {
                break;
            }
        }
        // A type name at the start of a path (`Patient.name`) selects the resource itself.
        if !found
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && doc
                .get(node, "resourceType")
                .is_some_and(|t| doc.raw(t) == name)
        {
            out.push(item.clone());
        }
    }

    /// The item as a primitive value (strings of date types become temporals); `None` for
    /// objects and arrays.
    fn primitive(&self, item: &Item<'e>) -> Option<Item<'e>> {
        match item {
            Item::Node(node, hint) => {
                let doc = &self.doc;
                match doc.kind(*node) {
                    Kind::Bool => Some(Item::Bool(doc.bool_value(*node))),
                    Kind::Number => {
                        let raw = doc.raw(*node);
                        if raw.contains(['.', 'e', 'E']) {
                            Decimal::parse(raw).map(Item::Dec)
                        } else {
                            raw.parse()
                                .ok()
                                .map(Item::Int)
                                .or_else(|| Decimal::parse(raw).map(Item::Dec))
                        }
                    }
                    Kind::String => {
                        let text = doc.str_value(*node);
                        let temporal = match *hint {
                            Some("Date") => Temporal::parse_date_time(&text, TemporalKind::Date),
                            Some("DateTime" | "Instant") => {
                                Temporal::parse_date_time(&text, TemporalKind::DateTime)
                            }
                            Some("Time") => Temporal::parse_time(&text),
                            _ => None,
                        };
                        Some(temporal.map_or(Item::Str(text), Item::Temporal))
                    }
                    _ => None,
                }
            }
            other => Some(other.clone()),
        }
    }

    /// A collection of at most one item, or an error naming `what`.
    fn singleton<'c>(&self, collection: &'c [Item<'e>], what: &str) -> Result<Option<Item<'e>>> {
        match collection {
            [] => Ok(None),
            [item] => Ok(Some(self.primitive(item).unwrap_or_else(|| item.clone()))),
            _ => fail(format!(
                "{what} needs a single item, got {}",
                collection.len()
            )),
        }
    }

    /// A collection in a boolean context: empty is unknown, a single boolean is itself, any
    /// other single item is true.
    fn boolean(&self, collection: &[Item<'e>], what: &str) -> Result<Option<bool>> {
        Ok(match self.singleton(collection, what)? {
            None => None,
            Some(Item::Bool(b)) => Some(b),
            Some(_) => Some(true),
        })
    }

    fn string_of(&self, item: &Item<'e>) -> Option<Cow<'e, str>> {
        match self.primitive(item)? {
            Item::Str(s) => Some(s),
            Item::Node(..) => None,
            Item::Temporal(_) => match item {
                Item::Node(node, _) => Some(self.doc.str_value(*node)),
                _ => None,
            },
            Item::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Item::Int(n) => Some(Cow::Owned(n.to_string())),
            Item::Dec(d) => Some(Cow::Owned(d.to_string())),
        }
    }

    fn single_string(&self, collection: &[Item<'e>], what: &str) -> Result<Option<Cow<'e, str>>> {
        match collection {
            [] => Ok(None),
            [item] => match self.string_of(item) {
                Some(s) => Ok(Some(s)),
                None => fail(format!("{what} needs a string")),
            },
            _ => fail(format!(
                "{what} needs a single string, got {} items",
                collection.len()
            )),
        }
    }

    /// Whether `item` is of the FHIR or System type `name`.
    pub(crate) fn has_type(&self, item: &Item<'e>, name: &str) -> bool {
        match item {
            Item::Node(_, Some(suffix)) => same_type(name, suffix),
            Item::Node(node, None) => match self.doc.kind(*node) {
                Kind::Bool => matches!(name, "boolean" | "Boolean"),
                Kind::Number => {
                    let raw = self.doc.raw(*node);
                    if raw.contains(['.', 'e', 'E']) {
                        matches!(name, "decimal" | "Decimal")
                    } else {
                        matches!(
                            name,
                            "integer" | "Integer" | "positiveInt" | "unsignedInt" | "integer64"
                        )
                    }
                }
                Kind::String => is_string_type(name) || name == "String",
                Kind::Object => self.doc.get(*node, "resourceType").is_some_and(|t| {
                    self.doc.raw(t) == name || name == "Resource" || name == "DomainResource"
                }),
                _ => false,
            },
            Item::Bool(_) => matches!(name, "Boolean" | "boolean"),
            Item::Int(_) => matches!(name, "Integer" | "integer"),
            Item::Dec(_) => matches!(name, "Decimal" | "decimal"),
            Item::Str(_) => matches!(name, "String" | "string"),
            Item::Temporal(t) => match t.kind {
                TemporalKind::Date => matches!(name, "Date" | "date"),
                TemporalKind::DateTime => matches!(name, "DateTime" | "dateTime" | "instant"),
                TemporalKind::Time => matches!(name, "Time" | "time"),
            },
        }
    }

    fn call(
        &self,
        func: &'e Func,
        args: &'e [Expr],
        input: &[Item<'e>],
        focus: &[Item<'e>],
        index: Option<i64>,
    ) -> Result<Collection<'e>> {
        let arg = |i: usize| -> Result<Collection<'e>> { self.eval_at(&args[i], focus, index) };
        Ok(match func {
            Func::Where => {
                let mut out = Collection::new();
                for (i, item) in input.iter().enumerate() {
                    let keep =
                        self.eval_at(&args[0], std::slice::from_ref(item), Some(i as i64))?;
                    if self.boolean(&keep, "where()")? == Some(true) {
                        out.push(item.clone());
                    }
                }
                out
            }
            Func::Select => {
                let mut out = Collection::new();
                for (i, item) in input.iter().enumerate() {
                    out.extend(self.eval_at(
                        &args[0],
                        std::slice::from_ref(item),
                        Some(i as i64),
                    )?);
                }
                out
            }
            Func::Repeat => {
                let mut out = Collection::new();
                let mut pending: Collection<'e> = SmallVec::from(input);
                let mut rounds = 0;
                while !pending.is_empty() {
                    rounds += 1;
                    if rounds > 1000 {
                        return fail("repeat() went deeper than 1000 levels");
                    }
                    let mut next = Collection::new();
                    for item in &pending {
                        next.extend(self.eval_at(&args[0], std::slice::from_ref(item), None)?);
                    }
                    out.extend(next.iter().cloned());
                    pending = next;
                }
                out
            }
            Func::Exists => {
                if args.is_empty() {
                    smallvec![Item::Bool(!input.is_empty())]
                } else {
                    let mut any = false;
                    for (i, item) in input.iter().enumerate() {
                        let value =
                            self.eval_at(&args[0], std::slice::from_ref(item), Some(i as i64))?;
                        if self.boolean(&value, "exists()")? == Some(true) {
                            any = true;
                            break;
                        }
                    }
                    smallvec![Item::Bool(any)]
                }
            }
            Func::All => {
                let mut all = true;
                for (i, item) in input.iter().enumerate() {
                    let value =
                        self.eval_at(&args[0], std::slice::from_ref(item), Some(i as i64))?;
                    if self.boolean(&value, "all()")? != Some(true) {
                        all = false;
                        break;
                    }
                }
                smallvec![Item::Bool(all)]
            }
            Func::Empty => smallvec![Item::Bool(input.is_empty())],
            Func::HasValue => smallvec![Item::Bool(
                input.len() == 1
                    && self
                        .primitive(&input[0])
                        .is_some_and(|p| !matches!(p, Item::Node(..))),
            )],
            Func::First => input.first().cloned().into_iter().collect(),
            Func::Last => input.last().cloned().into_iter().collect(),
            Func::Tail => input.iter().skip(1).cloned().collect(),
            Func::Skip => {
                let n = single_int(&arg(0)?, "skip()")?.unwrap_or(0).max(0) as usize;
                input.iter().skip(n).cloned().collect()
            }
            Func::Take => {
                let n = single_int(&arg(0)?, "take()")?.unwrap_or(0).max(0) as usize;
                input.iter().take(n).cloned().collect()
            }
            Func::Single => match input {
                [] => Collection::new(),
                [item] => smallvec![item.clone()],
                _ => return fail(format!("single() on {} items", input.len())),
            },
            Func::Count => smallvec![Item::Int(input.len() as i64)],
            Func::Distinct => {
                let mut out: Collection<'e> = Collection::new();
                for item in input {
                    if !out.iter().any(|o| self.equal_items(o, item) == Some(true)) {
                        out.push(item.clone());
                    }
                }
                out
            }
            Func::Not => match self.boolean(input, "not()")? {
                None => Collection::new(),
                Some(b) => smallvec![Item::Bool(!b)],
            },
            Func::AllTrue | Func::AnyTrue | Func::AllFalse | Func::AnyFalse => {
                let mut values = Vec::with_capacity(input.len());
                for item in input {
                    match self.primitive(item) {
                        Some(Item::Bool(b)) => values.push(b),
                        _ => {
                            return fail("allTrue()/anyTrue()/allFalse()/anyFalse() need booleans");
                        }
                    }
                }
                let result = match func {
                    Func::AllTrue => values.iter().all(|b| *b),
                    Func::AnyTrue => values.iter().any(|b| *b),
                    Func::AllFalse => values.iter().all(|b| !*b),
                    _ => values.iter().any(|b| !*b),
                };
                smallvec![Item::Bool(result)]
            }
            Func::OfType(name) | Func::AsType(name) => input
                .iter()
                .filter(|item| self.has_type(item, name))
                .cloned()
                .collect(),
            Func::IsType(name) => match input {
                [] => Collection::new(),
                [item] => smallvec![Item::Bool(self.has_type(item, name))],
                _ => return fail(format!("is({name}) needs a single item")),
            },
            Func::Extension => {
                let url = arg(0)?;
                let Some(url) = self.single_string(&url, "extension()")? else {
                    return Ok(Collection::new());
                };
                let mut out = Collection::new();
                let doc = &self.doc;
                for item in input {
                    let Item::Node(node, _) = item else { continue };
                    if let Some(extensions) = doc.get(*node, "extension") {
                        for extension in doc.elements(extensions) {
                            if doc
                                .get(extension, "url")
                                .is_some_and(|u| doc.str_value(u) == url)
                            {
                                out.push(Item::Node(extension, None));
                            }
                        }
                    }
                }
                out
            }
            Func::Join => {
                let separator = if args.is_empty() {
                    Cow::Borrowed("")
                } else {
                    self.single_string(&arg(0)?, "join()")?
                        .unwrap_or(Cow::Borrowed(""))
                };
                // An empty collection joins to the empty string (the suite's expectation).
                let mut out = String::new();
                for (i, item) in input.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&separator);
                    }
                    match self.string_of(item) {
                        Some(s) => out.push_str(&s),
                        None => return fail("join() needs strings"),
                    }
                }
                smallvec![Item::Str(Cow::Owned(out))]
            }
            Func::GetResourceKey => {
                let mut out = Collection::new();
                for item in input {
                    let Item::Node(node, _) = item else { continue };
                    if self.doc.get(*node, "resourceType").is_some() {
                        if let Some(id) = self.doc.get(*node, "id") {
                            out.push(Item::Str(self.doc.str_value(id)));
                        }
                    }
                }
                out
            }
            Func::GetReferenceKey(wanted) => {
                let mut out = Collection::new();
                for item in input {
                    let Item::Node(node, _) = item else { continue };
                    if let Some(reference) = self.doc.get(*node, "reference") {
                        let declared = self.doc.get(*node, "type").map(|t| self.doc.str_value(t));
                        let key = match self.doc.str_value(reference) {
                            // Most references have no escapes: the key borrows the resource.
                            Cow::Borrowed(reference) => {
                                reference_key(reference, declared.as_deref(), wanted.as_deref())
                                    .map(Cow::Borrowed)
                            }
                            Cow::Owned(reference) => {
                                reference_key(&reference, declared.as_deref(), wanted.as_deref())
                                    .map(|key| Cow::Owned(key.to_owned()))
                            }
                        };
                        if let Some(key) = key {
                            out.push(Item::Str(key));
                        }
                    }
                }
                out
            }
            Func::LowBoundary | Func::HighBoundary => {
                let high = matches!(func, Func::HighBoundary);
                let mut out = Collection::new();
                for item in input {
                    if let Some(boundary) = self.boundary(item, high) {
                        out.push(boundary);
                    }
                }
                out
            }
            Func::Iif => {
                let condition = arg(0)?;
                if self.boolean(&condition, "iif()")? == Some(true) {
                    arg(1)?
                } else if args.len() > 2 {
                    arg(2)?
                } else {
                    Collection::new()
                }
            }
            Func::ToString => match self.singleton(input, "toString()")? {
                None => Collection::new(),
                Some(_) => self
                    .string_of(&input[0])
                    .map(Item::Str)
                    .into_iter()
                    .collect(),
            },
            Func::ToInteger => match self.singleton(input, "toInteger()")? {
                Some(Item::Int(n)) => smallvec![Item::Int(n)],
                Some(Item::Bool(b)) => smallvec![Item::Int(i64::from(b))],
                Some(Item::Str(s)) => s.parse().ok().map(Item::Int).into_iter().collect(),
                _ => Collection::new(),
            },
            Func::ToDecimal => match self.singleton(input, "toDecimal()")? {
                Some(Item::Int(n)) => smallvec![Item::Dec(Decimal::from_int(n))],
                Some(Item::Dec(d)) => smallvec![Item::Dec(d)],
                Some(Item::Bool(b)) => smallvec![Item::Dec(Decimal::from_int(i64::from(b)))],
                Some(Item::Str(s)) => Decimal::parse(&s).map(Item::Dec).into_iter().collect(),
                _ => Collection::new(),
            },
            Func::ToBoolean => match self.singleton(input, "toBoolean()")? {
                Some(Item::Bool(b)) => smallvec![Item::Bool(b)],
                Some(Item::Int(n)) if n == 0 || n == 1 => smallvec![Item::Bool(n == 1)],
                Some(Item::Str(s)) => match s.to_ascii_lowercase().as_str() {
                    "true" | "t" | "yes" | "y" | "1" | "1.0" => smallvec![Item::Bool(true)],
                    "false" | "f" | "no" | "n" | "0" | "0.0" => smallvec![Item::Bool(false)],
                    _ => Collection::new(),
                },
                _ => Collection::new(),
            },
            Func::StartsWith | Func::EndsWith | Func::ContainsText | Func::IndexOf => {
                let Some(text) = self.single_string(input, "a string function")? else {
                    return Ok(Collection::new());
                };
                let Some(needle) = self.single_string(&arg(0)?, "a string function")? else {
                    return Ok(Collection::new());
                };
                match func {
                    Func::StartsWith => smallvec![Item::Bool(text.starts_with(&*needle))],
                    Func::EndsWith => smallvec![Item::Bool(text.ends_with(&*needle))],
                    Func::ContainsText => smallvec![Item::Bool(text.contains(&*needle))],
                    _ => smallvec![Item::Int(
                        text.find(&*needle)
                            .map_or(-1, |byte| text[..byte].chars().count() as i64),
                    )],
                }
            }
            Func::Substring => {
                let Some(text) = self.single_string(input, "substring()")? else {
                    return Ok(Collection::new());
                };
                let start = single_int(&arg(0)?, "substring()")?;
                let length = if args.len() > 1 {
                    single_int(&arg(1)?, "substring()")?
                } else {
                    None
                };
                match start {
                    Some(start) if start >= 0 && (start as usize) < text.chars().count() => {
                        let chars = text.chars().skip(start as usize);
                        let taken: String = match length {
                            Some(n) => chars.take(n.max(0) as usize).collect(),
                            None => chars.collect(),
                        };
                        smallvec![Item::Str(Cow::Owned(taken))]
                    }
                    _ => Collection::new(),
                }
            }
            Func::Lower | Func::Upper | Func::Trim | Func::Length => {
                let Some(text) = self.single_string(input, "a string function")? else {
                    return Ok(Collection::new());
                };
                match func {
                    Func::Lower => smallvec![Item::Str(Cow::Owned(text.to_lowercase()))],
                    Func::Upper => smallvec![Item::Str(Cow::Owned(text.to_uppercase()))],
                    Func::Trim => smallvec![Item::Str(Cow::Owned(text.trim().to_owned()))],
                    _ => smallvec![Item::Int(text.chars().count() as i64)],
                }
            }
            Func::Replace => {
                let Some(text) = self.single_string(input, "replace()")? else {
                    return Ok(Collection::new());
                };
                let pattern = self.single_string(&arg(0)?, "replace()")?;
                let substitution = self.single_string(&arg(1)?, "replace()")?;
                match (pattern, substitution) {
                    (Some(p), Some(s)) => smallvec![Item::Str(Cow::Owned(text.replace(&*p, &s)))],
                    _ => Collection::new(),
                }
            }
            Func::Split => {
                let Some(text) = self.single_string(input, "split()")? else {
                    return Ok(Collection::new());
                };
                let Some(separator) = self.single_string(&arg(0)?, "split()")? else {
                    return Ok(Collection::new());
                };
                text.split(&*separator)
                    .map(|part| Item::Str(Cow::Owned(part.to_owned())))
                    .collect()
            }
            Func::Children | Func::Descendants => {
                let mut out = Collection::new();
                let mut pending: Collection<'e> = SmallVec::from(input);
                loop {
                    let mut next = Collection::new();
                    for item in &pending {
                        if let Item::Node(node, _) = item {
                            for (_, value) in self.doc.members(*node) {
                                match self.doc.kind(value) {
                                    Kind::Array => next.extend(
                                        self.doc.elements(value).map(|e| Item::Node(e, None)),
                                    ),
                                    Kind::Null => {}
                                    _ => next.push(Item::Node(value, None)),
                                }
                            }
                        }
                    }
                    out.extend(next.iter().cloned());
                    if matches!(func, Func::Children) || next.is_empty() {
                        break;
                    }
                    pending = next;
                }
                out
            }
            Func::Abs | Func::Floor | Func::Ceiling | Func::Round => {
                let digits = if args.is_empty() {
                    0
                } else {
                    single_int(&arg(0)?, "round()")?.unwrap_or(0)
                };
                match self.singleton(input, "a math function")? {
                    None => Collection::new(),
                    Some(Item::Int(n)) => smallvec![Item::Int(if matches!(func, Func::Abs) {
                        n.abs()
                    } else {
                        n
                    })],
                    Some(Item::Dec(d)) => {
                        let value = d.to_f64();
                        let result = match func {
                            Func::Abs => {
                                return Ok(smallvec![Item::Dec(if value < 0.0 {
                                    Decimal::from_int(0).checked_sub(d).unwrap_or(d)
                                } else {
                                    d
                                })]);
                            }
                            Func::Floor => value.floor(),
                            Func::Ceiling => value.ceil(),
                            _ => {
                                let factor = 10f64.powi(digits.clamp(0, 15) as i32);
                                let rounded = (value * factor).round() / factor;
                                return Ok(Decimal::parse(&format!(
                                    "{rounded:.*}",
                                    digits.clamp(0, 15) as usize
                                ))
                                .map(Item::Dec)
                                .into_iter()
                                .collect());
                            }
                        };
                        smallvec![Item::Int(result as i64)]
                    }
                    Some(_) => return fail("a math function needs a number"),
                }
            }
        })
    }

    fn boundary(&self, item: &Item<'e>, high: bool) -> Option<Item<'e>> {
        let temporal = |t: Temporal| Some(Item::Str(Cow::Owned(t.boundary(high))));
        match self.primitive(item)? {
            Item::Dec(d) => d.boundary(high).map(Item::Dec),
            Item::Int(n) => Decimal::from_int(n).boundary(high).map(Item::Dec),
            Item::Temporal(t) => temporal(t),
            Item::Str(s) => {
                if s.contains(':') && !s.contains('-') {
                    Temporal::parse_time(&s).and_then(temporal)
                } else if s.contains('T') {
                    Temporal::parse_date_time(&s, TemporalKind::DateTime).and_then(temporal)
                } else {
                    Temporal::parse_date_time(&s, TemporalKind::Date).and_then(temporal)
                }
            }
            _ => None,
        }
    }

    fn binary(
        &self,
        op: BinOp,
        left: &'e Expr,
        right: &'e Expr,
        focus: &[Item<'e>],
        index: Option<i64>,
    ) -> Result<Collection<'e>> {
        // Boolean operators evaluate their right side only when it can change the answer.
        if matches!(op, BinOp::And | BinOp::Or | BinOp::Implies) {
            let a = self.eval_at(left, focus, index)?;
            let a = self.boolean(&a, "a boolean operator")?;
            let short = match (op, a) {
                (BinOp::And, Some(false)) => Some(false),
                (BinOp::Or, Some(true)) => Some(true),
                (BinOp::Implies, Some(false)) => Some(true),
                _ => None,
            };
            if let Some(result) = short {
                return Ok(smallvec![Item::Bool(result)]);
            }
            let b = self.eval_at(right, focus, index)?;
            let b = self.boolean(&b, "a boolean operator")?;
            let result = match (op, a, b) {
                (BinOp::And, Some(true), Some(true)) => Some(true),
                (BinOp::And, _, Some(false)) => Some(false),
                (BinOp::And, _, _) => None,
                (BinOp::Or, _, Some(true)) => Some(true),
                (BinOp::Or, Some(false), Some(false)) => Some(false),
                (BinOp::Or, _, _) => None,
                (_, Some(true), Some(b)) => Some(b),
                (_, _, Some(true)) => Some(true),
                _ => None,
            };
            return Ok(result.map(Item::Bool).into_iter().collect());
        }
        let a = self.eval_at(left, focus, index)?;
        let b = self.eval_at(right, focus, index)?;
        Ok(match op {
            BinOp::Xor => match (self.boolean(&a, "xor")?, self.boolean(&b, "xor")?) {
                (Some(x), Some(y)) => smallvec![Item::Bool(x != y)],
                _ => Collection::new(),
            },
            BinOp::Union => {
                let mut out: Collection<'e> = Collection::new();
                for item in a.into_iter().chain(b) {
                    if !out.iter().any(|o| self.equal_items(o, &item) == Some(true)) {
                        out.push(item);
                    }
                }
                out
            }
            BinOp::Eq | BinOp::Ne | BinOp::Equiv | BinOp::NotEquiv => {
                let equivalence = matches!(op, BinOp::Equiv | BinOp::NotEquiv);
                let negate = matches!(op, BinOp::Ne | BinOp::NotEquiv);
                if a.is_empty() || b.is_empty() {
                    if equivalence {
                        smallvec![Item::Bool((a.is_empty() && b.is_empty()) != negate)]
                    } else {
                        Collection::new()
                    }
                } else if a.len() != b.len() {
                    smallvec![Item::Bool(negate)]
                } else {
                    let mut result = Some(true);
                    for (x, y) in a.iter().zip(&b) {
                        let equal = if equivalence {
                            Some(self.equivalent_items(x, y))
                        } else {
                            self.equal_items(x, y)
                        };
                        match equal {
                            Some(true) => {}
                            Some(false) => {
                                result = Some(false);
                                break;
                            }
                            None => result = None,
                        }
                    }
                    result
                        .map(|r| Item::Bool(r != negate))
                        .into_iter()
                        .collect()
                }
            }
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let (Some(x), Some(y)) = (
                    self.singleton(&a, "a comparison")?,
                    self.singleton(&b, "a comparison")?,
                ) else {
                    return Ok(Collection::new());
                };
                match compare(&x, &y) {
                    Some(ordering) => smallvec![Item::Bool(match op {
                        BinOp::Lt => ordering == Ordering::Less,
                        BinOp::Gt => ordering == Ordering::Greater,
                        BinOp::Le => ordering != Ordering::Greater,
                        _ => ordering != Ordering::Less,
                    })],
                    None if comparable(&x, &y) => Collection::new(),
                    None => return fail("these values cannot be compared"),
                }
            }
            BinOp::In | BinOp::Contains => {
                let (needle, haystack) = if op == BinOp::In { (&a, &b) } else { (&b, &a) };
                match needle.as_slice() {
                    [] => Collection::new(),
                    [item] => smallvec![Item::Bool(
                        haystack
                            .iter()
                            .any(|h| self.equal_items(item, h) == Some(true)),
                    )],
                    _ => return fail("`in`/`contains` need a single item"),
                }
            }
            BinOp::Concat => {
                let x = self.single_string(&a, "`&`")?.unwrap_or(Cow::Borrowed(""));
                let y = self.single_string(&b, "`&`")?.unwrap_or(Cow::Borrowed(""));
                smallvec![Item::Str(Cow::Owned(format!("{x}{y}")))]
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::IntDiv | BinOp::Mod => {
                let (Some(x), Some(y)) = (
                    self.singleton(&a, "arithmetic")?,
                    self.singleton(&b, "arithmetic")?,
                ) else {
                    return Ok(Collection::new());
                };
                arithmetic(op, x, y)?.into_iter().collect()
            }
            BinOp::And | BinOp::Or | BinOp::Implies => unreachable!("handled above"),
        })
    }

    /// FHIRPath `=` on two items: `None` when unknown (dates of different precision).
    fn equal_items(&self, x: &Item<'e>, y: &Item<'e>) -> Option<bool> {
        match (self.primitive(x), self.primitive(y)) {
            (Some(a), Some(b)) => match compare(&a, &b) {
                Some(ordering) => Some(ordering == Ordering::Equal),
                None if comparable(&a, &b) => None,
                None => Some(false),
            },
            (None, None) => match (x, y) {
                (Item::Node(a, _), Item::Node(b, _)) => {
                    Some(self.doc.to_value(*a) == self.doc.to_value(*b))
                }
                _ => Some(false),
            },
            _ => Some(false),
        }
    }

    /// FHIRPath `~`: case-insensitive for strings, never unknown.
    fn equivalent_items(&self, x: &Item<'e>, y: &Item<'e>) -> bool {
        match (self.primitive(x), self.primitive(y)) {
            (Some(Item::Str(a)), Some(Item::Str(b))) => {
                a.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase()
                    == b.split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .to_lowercase()
            }
            _ => self.equal_items(x, y) == Some(true),
        }
    }
}

/// Whether two primitives are of kinds that compare (so a `None` from `compare` means
/// "unknown" rather than "different kinds").
fn comparable(a: &Item<'_>, b: &Item<'_>) -> bool {
    matches!(
        (a, b),
        (Item::Temporal(_), Item::Temporal(_))
            | (Item::Temporal(_), Item::Str(_))
            | (Item::Str(_), Item::Temporal(_))
    )
}

/// Orders two primitives of compatible kinds.
fn compare(a: &Item<'_>, b: &Item<'_>) -> Option<Ordering> {
    match (a, b) {
        (Item::Int(x), Item::Int(y)) => Some(x.cmp(y)),
        (Item::Int(x), Item::Dec(y)) => Some(Decimal::from_int(*x).cmp(y)),
        (Item::Dec(x), Item::Int(y)) => Some(x.cmp(&Decimal::from_int(*y))),
        (Item::Dec(x), Item::Dec(y)) => Some(x.cmp(y)),
        (Item::Str(x), Item::Str(y)) => Some(x.cmp(y)),
        (Item::Bool(x), Item::Bool(y)) => Some(x.cmp(y)),
        (Item::Temporal(x), Item::Temporal(y)) => x.compare(y),
        (Item::Str(s), Item::Temporal(t)) => parse_like(s, t)?.compare(t),
        (Item::Temporal(t), Item::Str(s)) => t.compare(&parse_like(s, t)?),
        _ => None,
    }
}

/// Reads a string as the same kind of temporal value as `like`.
fn parse_like(text: &str, like: &Temporal) -> Option<Temporal> {
    match like.kind {
        TemporalKind::Time => Temporal::parse_time(text),
        TemporalKind::Date if !text.contains('T') => {
            Temporal::parse_date_time(text, TemporalKind::Date)
        }
        _ => Temporal::parse_date_time(text, TemporalKind::DateTime),
    }
}

fn arithmetic<'e>(op: BinOp, x: Item<'e>, y: Item<'e>) -> Result<Option<Item<'e>>> {
    if let (BinOp::Add, Item::Str(a), Item::Str(b)) = (op, &x, &y) {
        return Ok(Some(Item::Str(Cow::Owned(format!("{a}{b}")))));
    }
    let overflow = || EvalError("arithmetic overflow".to_owned());
    match (x, y) {
        (Item::Int(a), Item::Int(b)) => Ok(match op {
            BinOp::Add => Some(Item::Int(a.checked_add(b).ok_or_else(overflow)?)),
            BinOp::Sub => Some(Item::Int(a.checked_sub(b).ok_or_else(overflow)?)),
            BinOp::Mul => Some(Item::Int(a.checked_mul(b).ok_or_else(overflow)?)),
            BinOp::Div => Decimal::from_int(a)
                .checked_div(Decimal::from_int(b))
                .map(Item::Dec),
            BinOp::IntDiv => a.checked_div(b).map(Item::Int),
            _ => a.checked_rem(b).map(Item::Int),
        }),
        (a @ (Item::Int(_) | Item::Dec(_)), b @ (Item::Int(_) | Item::Dec(_))) => {
            let to_dec = |item: Item<'_>| match item {
                Item::Int(n) => Decimal::from_int(n),
                Item::Dec(d) => d,
                _ => Decimal::from_int(0),
            };
            let (a, b) = (to_dec(a), to_dec(b));
            Ok(match op {
                BinOp::Add => Some(Item::Dec(a.checked_add(b).ok_or_else(overflow)?)),
                BinOp::Sub => Some(Item::Dec(a.checked_sub(b).ok_or_else(overflow)?)),
                BinOp::Mul => Some(Item::Dec(a.checked_mul(b).ok_or_else(overflow)?)),
                BinOp::Div => a.checked_div(b).map(Item::Dec),
                BinOp::IntDiv => a
                    .checked_div(b)
                    .map(|q| Item::Int(q.to_f64().trunc() as i64)),
                _ => {
                    let (fa, fb) = (a.to_f64(), b.to_f64());
                    if fb == 0.0 {
                        None
                    } else {
                        Decimal::parse(&format!("{}", fa % fb)).map(Item::Dec)
                    }
                }
            })
        }
        _ => fail("arithmetic needs numbers (or strings for +)"),
    }
}

fn single_int(collection: &[Item<'_>], what: &str) -> Result<Option<i64>> {
    match collection {
        [] => Ok(None),
        [Item::Int(n)] => Ok(Some(*n)),
        _ => fail(format!("{what} needs a single integer")),
    }
}

/// The key of a reference: the id of `Type/id`, of an absolute URL ending in `Type/id`
/// (with or without `_history/v`), or of `urn:uuid:`. With `wanted`, only references to that
/// type (from the reference itself or its `type` element).
pub(crate) fn reference_key<'r>(
    reference: &'r str,
    declared: Option<&str>,
    wanted: Option<&str>,
) -> Option<&'r str> {
    if let Some(uuid) = reference.strip_prefix("urn:uuid:") {
        return match wanted {
            Some(wanted) if declared != Some(wanted) => None,
            _ => Some(uuid),
        };
    }
    if reference.starts_with('#') || reference.is_empty() {
        return None;
    }
    let end = reference
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(reference.len());
    // `?` and `#` are ASCII, so `end` is a character boundary.
    let path = &reference[..end];
    // The last two non-empty segments, or the two before `_history/<version>`.
    let mut segments = path.rsplit('/').filter(|s| !s.is_empty());
    let (mut id, mut kind) = (segments.next()?, segments.next()?);
    if kind == "_history" {
        if let (Some(history_id), Some(history_kind)) = (segments.next(), segments.next()) {
            (id, kind) = (history_id, history_kind);
        }
    }
    if !kind.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    match wanted {
        Some(wanted) if kind != wanted => None,
        _ => Some(id),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;
    use crate::json::Tape;

    fn eval_json(resource: &str, path: &str) -> std::result::Result<serde_json::Value, EvalError> {
        let expr = parse(path, &|_| None).unwrap();
        let mut tape = Tape::new();
        let doc = tape.parse(resource).unwrap();
        let env = Env {
            doc,
            resource: doc.root(),
            row_index: 0,
        };
        let out = env.eval(&expr, &[Item::Node(doc.root(), None)])?;
        Ok(serde_json::Value::Array(
            out.iter()
                .map(|item| match item {
                    Item::Node(n, _) => doc.to_value(*n),
                    Item::Bool(b) => serde_json::json!(b),
                    Item::Int(n) => serde_json::json!(n),
                    Item::Dec(d) => serde_json::json!(d.to_string()),
                    Item::Str(s) => serde_json::json!(s),
                    Item::Temporal(t) => serde_json::json!(format!("{t:?}")),
                })
                .collect(),
        ))
    }

    const OBS: &str = r#"{"resourceType":"Observation","id":"o1","status":"final",
        "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
        "subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-05-01T10:00:00Z",
        "component":[{"code":{"coding":[{"code":"8480-6"}]},"valueQuantity":{"value":120,"unit":"mm[Hg]"}},
                     {"code":{"coding":[{"code":"8462-4"}]},"valueQuantity":{"value":80.5,"unit":"mm[Hg]"}}]}"#;

    #[test]
    fn paths_choices_and_functions() {
        let j = |p: &str| eval_json(OBS, p).unwrap();
        assert_eq!(j("code.coding.code"), serde_json::json!(["85354-9"]));
        assert_eq!(j("Observation.id"), serde_json::json!(["o1"]));
        assert_eq!(
            j("component.value.ofType(Quantity).value"),
            serde_json::json!([120, 80.5])
        );
        assert_eq!(
            j("component.where(code.coding.code = '8462-4').value.value"),
            serde_json::json!([80.5])
        );
        assert_eq!(
            j("component.value.value.first() + 1"),
            serde_json::json!([121])
        );
        assert_eq!(
            j("component.value.value[1] * 2"),
            serde_json::json!(["161.0"])
        );
        assert_eq!(
            j("subject.getReferenceKey(Patient)"),
            serde_json::json!(["p1"])
        );
        assert_eq!(j("subject.getReferenceKey(Group)"), serde_json::json!([]));
        assert_eq!(
            j("effective.ofType(dateTime) > @2024-04-30"),
            serde_json::json!([true])
        );
        assert_eq!(
            j("effective.ofType(dateTime) = @2024-05-01"),
            serde_json::json!([])
        );
        assert_eq!(j("component.count()"), serde_json::json!([2]));
        assert_eq!(
            j("component.code.coding.code.join('|')"),
            serde_json::json!(["8480-6|8462-4"])
        );
        assert_eq!(
            j("status = 'final' and id.exists()"),
            serde_json::json!([true])
        );
        assert_eq!(j("missing = 'x' or true"), serde_json::json!([true]));
        assert_eq!(j("missing = 'x' and true"), serde_json::json!([]));
        assert_eq!(
            j("iif(status = 'final', 'F', 'N')"),
            serde_json::json!(["F"])
        );
        assert_eq!(
            j("id.upper() & '-' & status"),
            serde_json::json!(["O1-final"])
        );
        assert_eq!(j("(1 | 2 | 1).count()"), serde_json::json!([2]));
    }

    #[test]
    fn errors_for_shapes_views_cannot_use() {
        assert!(eval_json(OBS, "component.value.value > 1").is_err());
        assert!(eval_json(OBS, "component.single()").is_err());
    }

    #[test]
    fn reference_keys() {
        assert_eq!(reference_key("Patient/123", None, None), Some("123"));
        assert_eq!(
            reference_key("Patient/123", None, Some("Patient")),
            Some("123")
        );
        assert_eq!(reference_key("Patient/123", None, Some("Group")), None);
        assert_eq!(
            reference_key(
                "https://x.org/fhir/Patient/9/_history/2",
                None,
                Some("Patient")
            ),
            Some("9")
        );
        assert_eq!(reference_key("urn:uuid:abc", None, None), Some("abc"));
        assert_eq!(reference_key("urn:uuid:abc", None, Some("Patient")), None);
        assert_eq!(
            reference_key("urn:uuid:abc", Some("Patient"), Some("Patient")),
            Some("abc")
        );
        assert_eq!(reference_key("#contained", None, None), None);
        assert_eq!(reference_key("Patient/_history/2", None, None), None);
        assert_eq!(reference_key("Patient/7/?x=1", None, None), Some("7"));
        assert_eq!(reference_key("123", None, None), None);
        assert_eq!(
            reference_key("http://x.org/fhir/Observation/o-1", None, None),
            Some("o-1")
        );
    }
}
