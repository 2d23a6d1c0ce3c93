//! Reading a ViewDefinition: every element checked, every FHIRPath parsed, every error naming
//! the element (`select[0].column[2].path`), before any resource is read.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fhirpath::{self, Decimal, Expr, Temporal, TemporalKind};

/// A column of a view's table, in output order.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column name (`^[A-Za-z][A-Za-z0-9_]*$`).
    pub name: String,
    /// The FHIR type: the one declared with `type`, or inferred from the path when that is
    /// possible without a model (`exists()` is boolean, `ofType(integer)` integer), else `None`.
    pub fhir_type: Option<String>,
    /// Whether the type was declared (rather than inferred).
    pub declared: bool,
    /// `collection: true`: the column holds a list.
    pub collection: bool,
    /// The `ansi/type` tag, if any: the SQL type asked for (`DATE`, `DECIMAL(10,2)`...).
    pub ansi_type: Option<String>,
    /// The column's `description`.
    pub description: Option<String>,
    /// Where the column is defined (`select[0].column[1]`).
    pub element: String,
}

/// How a select iterates.
#[derive(Debug, Clone)]
pub(crate) enum Iteration {
    None,
    ForEach(Labeled),
    ForEachOrNull(Labeled),
    Repeat(Vec<Labeled>),
}

/// An expression with the element it came from, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Labeled {
    pub(crate) expr: Expr,
    pub(crate) element: String,
}

/// A compiled `select`.
#[derive(Debug, Clone)]
pub(crate) struct Select {
    pub(crate) iteration: Iteration,
    /// Own columns: (column index in the view, path).
    pub(crate) columns: Vec<(usize, Labeled)>,
    pub(crate) selects: Vec<Select>,
    pub(crate) union: Vec<Select>,
    /// The columns this select produces, its own and its children's: `[start, end)`.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A checked, compiled ViewDefinition.
#[derive(Debug, Clone)]
pub struct ViewDefinition {
    name: Option<String>,
    resource: String,
    columns: Vec<Column>,
    pub(crate) wheres: Vec<Labeled>,
    pub(crate) root: Select,
}

fn sql_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_resource_type(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The constant types a ViewDefinition may declare, as `value[x]` suffixes.
const CONSTANT_TYPES: &[&str] = &[
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Integer64",
    "Oid",
    "String",
    "PositiveInt",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
];

struct Reader {
    constants: Vec<(String, Expr)>,
    columns: Vec<Column>,
    /// Column ranges of first unionAll branches whose names a later branch repeats.
    repeatable: Vec<std::ops::Range<usize>>,
}

fn object<'v>(value: &'v Value, element: &str) -> Result<&'v Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| Error::definition(format!("{element} must be a JSON object")))
}

fn array<'v>(object: &'v Map<String, Value>, key: &str, element: &str) -> Result<&'v [Value]> {
    match object.get(key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(Error::definition(format!(
            "{element}.{key} must be an array"
        ))),
    }
}

fn string<'v>(object: &'v Map<String, Value>, key: &str, element: &str) -> Result<Option<&'v str>> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::definition(format!(
            "{element}.{key} must be a string, not {}",
            kind_of(other)
        ))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_members(object: &Map<String, Value>, allowed: &[&str], element: &str) -> Result<()> {
    for key in object.keys() {
        if !allowed.contains(&key.as_str())
            && !matches!(key.as_str(), "id" | "extension" | "modifierExtension")
        {
            return Err(Error::definition(format!(
                "{element} has an unknown member `{key}` (expected one of: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

impl Reader {
    fn path(&self, text: &str, element: &str) -> Result<Labeled> {
        let constant = |name: &str| {
            self.constants
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, expr)| expr.clone())
        };
        match fhirpath::parse(text, &constant) {
            Ok(expr) => Ok(Labeled {
                expr,
                element: element.to_owned(),
            }),
            Err(error) => Err(Error::definition(format!(
                "{element}: `{text}` is not valid FHIRPath: {} (at character {})",
                error.message,
                error.offset + 1
            ))),
        }
    }

    fn constant(&mut self, value: &Value, element: &str) -> Result<()> {
        let object = object(value, element)?;
        let name = string(object, "name", element)?
            .ok_or_else(|| Error::definition(format!("{element}.name is missing")))?;
        if !sql_name(name) {
            return Err(Error::definition(format!(
                "{element}.name `{name}` must be letters, digits and `_`, starting with a letter"
            )));
        }
        if self.constants.iter().any(|(n, _)| n == name) {
            return Err(Error::definition(format!(
                "{element}: a second constant named `{name}`"
            )));
        }
        let mut found = None;
        for (key, v) in object {
            let Some(suffix) = key.strip_prefix("value") else {
                if !matches!(
                    key.as_str(),
                    "name" | "id" | "extension" | "modifierExtension"
                ) {
                    return Err(Error::definition(format!(
                        "{element} has an unknown member `{key}`"
                    )));
                }
                continue;
            };
            if !CONSTANT_TYPES.contains(&suffix) {
                return Err(Error::definition(format!(
                    "{element}.{key}: constants cannot be of type {suffix}"
                )));
            }
            if found.is_some() {
                return Err(Error::definition(format!(
                    "{element} has more than one value[x]"
                )));
            }
            let bad =
                || Error::definition(format!("{element}.{key}: `{v}` is not a valid {suffix}"));
            let expr = match suffix {
                "Boolean" => Expr::Bool(v.as_bool().ok_or_else(bad)?),
                "Integer" | "Integer64" | "PositiveInt" | "UnsignedInt" => {
                    Expr::Int(v.as_i64().ok_or_else(bad)?)
                }
                "Decimal" => {
                    if !v.is_number() {
                        return Err(bad());
                    }
                    Expr::Dec(Decimal::parse(&v.to_string()).ok_or_else(bad)?)
                }
                "Date" => Expr::Temporal(
                    Temporal::parse_date_time(v.as_str().ok_or_else(bad)?, TemporalKind::Date)
                        .ok_or_else(bad)?,
                ),
                "DateTime" | "Instant" => Expr::Temporal(
                    Temporal::parse_date_time(v.as_str().ok_or_else(bad)?, TemporalKind::DateTime)
                        .ok_or_else(bad)?,
                ),
                "Time" => Expr::Temporal(
                    Temporal::parse_time(v.as_str().ok_or_else(bad)?).ok_or_else(bad)?,
                ),
                _ => Expr::Str(v.as_str().ok_or_else(bad)?.to_owned()),
            };
            found = Some(expr);
        }
        let expr = found.ok_or_else(|| {
            Error::definition(format!(
                "{element} (`{name}`) has no value (valueString, valueInteger...)"
            ))
        })?;
        self.constants.push((name.to_owned(), expr));
        Ok(())
    }

    fn select(&mut self, value: &Value, element: &str) -> Result<Select> {
        let object = object(value, element)?;
        check_members(
            object,
            &[
                "column",
                "select",
                "forEach",
                "forEachOrNull",
                "repeat",
                "unionAll",
            ],
            element,
        )?;
        let for_each = string(object, "forEach", element)?;
        let for_each_or_null = string(object, "forEachOrNull", element)?;
        let repeat = array(object, "repeat", element)?;
        let iterations = usize::from(for_each.is_some())
            + usize::from(for_each_or_null.is_some())
            + usize::from(object.contains_key("repeat"));
        if iterations > 1 {
            return Err(Error::definition(format!(
                "{element} may have only one of forEach, forEachOrNull and repeat"
            )));
        }
        let iteration = if let Some(path) = for_each {
            Iteration::ForEach(self.path(path, &format!("{element}.forEach"))?)
        } else if let Some(path) = for_each_or_null {
            Iteration::ForEachOrNull(self.path(path, &format!("{element}.forEachOrNull"))?)
        } else if object.contains_key("repeat") {
            if repeat.is_empty() {
                return Err(Error::definition(format!(
                    "{element}.repeat needs at least one path"
                )));
            }
            let mut paths = Vec::new();
            for (i, path) in repeat.iter().enumerate() {
                let label = format!("{element}.repeat[{i}]");
                let text = path
                    .as_str()
                    .ok_or_else(|| Error::definition(format!("{label} must be a string")))?;
                paths.push(self.path(text, &label)?);
            }
            Iteration::Repeat(paths)
        } else {
            Iteration::None
        };

        let start = self.columns.len();
        let mut columns = Vec::new();
        for (i, column) in array(object, "column", element)?.iter().enumerate() {
            let label = format!("{element}.column[{i}]");
            columns.push(self.column(column, &label)?);
        }
        let mut selects = Vec::new();
        for (i, nested) in array(object, "select", element)?.iter().enumerate() {
            selects.push(self.select(nested, &format!("{element}.select[{i}]"))?);
        }
        let mut union = Vec::new();
        let branches = array(object, "unionAll", element)?;
        if object.contains_key("unionAll") && branches.is_empty() {
            return Err(Error::definition(format!(
                "{element}.unionAll needs at least one select"
            )));
        }
        let union_start = self.columns.len();
        for (i, branch) in branches.iter().enumerate() {
            let label = format!("{element}.unionAll[{i}]");
            let before = self.columns.len();
            if i > 0 {
                self.repeatable.push(union_start..before);
            }
            let compiled = self.select(branch, &label);
            if i > 0 {
                self.repeatable.pop();
            }
            let compiled = compiled?;
            if i == 0 {
                union.push(compiled);
                continue;
            }
            // Later branches must produce the first branch's columns: same names, same order,
            // same types. They reuse its column indices.
            let mine: Vec<Column> = self.columns.drain(before..).collect();
            let first = &self.columns[union_start..before];
            let names = |cols: &[Column]| {
                cols.iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if mine.len() != first.len() || mine.iter().zip(first).any(|(a, b)| a.name != b.name) {
                return Err(Error::definition(format!(
                    "{label} has the columns ({}), but unionAll[0] has ({}): every branch of a unionAll needs the same columns in the same order",
                    names(&mine),
                    names(first)
                )));
            }
            for (a, b) in mine.iter().zip(first) {
                if a.declared && b.declared && a.fhir_type != b.fhir_type {
                    return Err(Error::definition(format!(
                        "{}: column `{}` is of type {} here but {} in unionAll[0]",
                        a.element,
                        a.name,
                        a.fhir_type.as_deref().unwrap_or("?"),
                        b.fhir_type.as_deref().unwrap_or("?")
                    )));
                }
            }
            union.push(shift(compiled, before, union_start));
        }
        let end = self.columns.len();
        if iterations == 0 && columns.is_empty() && selects.is_empty() && union.is_empty() {
            return Err(Error::definition(format!(
                "{element} has no column, select or unionAll"
            )));
        }
        Ok(Select {
            iteration,
            columns,
            selects,
            union,
            start,
            end,
        })
    }

    fn column(&mut self, value: &Value, element: &str) -> Result<(usize, Labeled)> {
        let object = object(value, element)?;
        check_members(
            object,
            &["name", "path", "description", "collection", "type", "tag"],
            element,
        )?;
        let path_text = string(object, "path", element)?
            .ok_or_else(|| Error::definition(format!("{element}.path is missing")))?;
        let path = self.path(path_text, &format!("{element}.path"))?;
        let name = string(object, "name", element)?
            .ok_or_else(|| Error::definition(format!("{element}.name is missing")))?;
        if !sql_name(name) {
            return Err(Error::definition(format!(
                "{element}.name `{name}` must be letters, digits and `_`, starting with a letter"
            )));
        }
        let repeatable = |index: usize| self.repeatable.iter().any(|r| r.contains(&index));
        if let Some(existing) = self
            .columns
            .iter()
            .enumerate()
            .find(|(i, c)| c.name == name && !repeatable(*i))
            .map(|(_, c)| c)
        {
            return Err(Error::definition(format!(
                "{element}.name `{name}` is already the name of {}",
                existing.element
            )));
        }
        let collection = match object.get("collection") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Error::definition(format!(
                    "{element}.collection must be true or false"
                )));
            }
        };
        let declared = string(object, "type", element)?.map(|t| {
            t.strip_prefix("http://hl7.org/fhir/StructureDefinition/")
                .unwrap_or(t)
                .to_owned()
        });
        let mut ansi_type = None;
        for (i, tag) in array(object, "tag", element)?.iter().enumerate() {
            let label = format!("{element}.tag[{i}]");
            let tag = self::object(tag, &label)?;
            let tag_name = string(tag, "name", &label)?
                .ok_or_else(|| Error::definition(format!("{label}.name is missing")))?;
            let tag_value = string(tag, "value", &label)?
                .ok_or_else(|| Error::definition(format!("{label}.value is missing")))?;
            if tag_name == "ansi/type" {
                ansi_type = Some(tag_value.to_owned());
            }
        }
        let inferred = fhirpath::static_type(&path.expr);
        let index = self.columns.len();
        self.columns.push(Column {
            name: name.to_owned(),
            declared: declared.is_some(),
            fhir_type: declared.or(inferred),
            collection,
            ansi_type,
            description: string(object, "description", element)?.map(str::to_owned),
            element: element.to_owned(),
        });
        Ok((index, path))
    }
}

/// Moves a union branch's column indices from `from..` to `to..` (it reuses the first
/// branch's columns).
fn shift(mut select: Select, from: usize, to: usize) -> Select {
    let delta = from - to;
    select.start -= delta;
    select.end -= delta;
    for (index, _) in &mut select.columns {
        *index -= delta;
    }
    select.selects = select
        .selects
        .into_iter()
        .map(|s| shift(s, from, to))
        .collect();
    select.union = select
        .union
        .into_iter()
        .map(|s| shift(s, from, to))
        .collect();
    select
}

impl ViewDefinition {
    /// Reads and checks a ViewDefinition from its JSON.
    ///
    /// # Errors
    /// [`ErrorKind::Definition`](crate::ErrorKind::Definition), naming the element at fault.
    pub fn from_json(value: &Value) -> Result<Self> {
        let root = object(value, "the ViewDefinition")?;
        if let Some(kind) = root.get("resourceType") {
            if kind != "ViewDefinition" {
                return Err(Error::definition(format!(
                    "resourceType is {kind}, not \"ViewDefinition\""
                )));
            }
        }
        let resource = string(root, "resource", "the ViewDefinition")?.ok_or_else(|| {
            Error::definition(
                "resource is missing: name the FHIR resource type the view reads, e.g. \"Patient\"",
            )
        })?;
        if !is_resource_type(resource) {
            return Err(Error::definition(format!(
                "resource `{resource}` is not a FHIR resource type name"
            )));
        }
        let name = string(root, "name", "the ViewDefinition")?;
        if let Some(name) = name {
            if !sql_name(name) {
                return Err(Error::definition(format!(
                    "name `{name}` must be letters, digits and `_`, starting with a letter (it names the table)"
                )));
            }
        }
        let mut reader = Reader {
            constants: Vec::new(),
            columns: Vec::new(),
            repeatable: Vec::new(),
        };
        for (i, constant) in array(root, "constant", "the ViewDefinition")?
            .iter()
            .enumerate()
        {
            reader.constant(constant, &format!("constant[{i}]"))?;
        }
        let selects = array(root, "select", "the ViewDefinition")?;
        if selects.is_empty() {
            return Err(Error::definition(
                "select is missing: a view needs at least one select with columns",
            ));
        }
        let mut compiled = Vec::new();
        for (i, select) in selects.iter().enumerate() {
            compiled.push(reader.select(select, &format!("select[{i}]"))?);
        }
        let mut wheres = Vec::new();
        for (i, clause) in array(root, "where", "the ViewDefinition")?
            .iter()
            .enumerate()
        {
            let label = format!("where[{i}]");
            let clause = object(clause, &label)?;
            check_members(clause, &["path", "description"], &label)?;
            let path = string(clause, "path", &label)?
                .ok_or_else(|| Error::definition(format!("{label}.path is missing")))?;
            wheres.push(reader.path(path, &format!("{label}.path"))?);
        }
        if reader.columns.is_empty() {
            return Err(Error::definition("the view has no columns"));
        }
        let end = reader.columns.len();
        Ok(ViewDefinition {
            name: name.map(str::to_owned),
            resource: resource.to_owned(),
            columns: reader.columns,
            wheres,
            root: Select {
                iteration: Iteration::None,
                columns: Vec::new(),
                selects: compiled,
                union: Vec::new(),
                start: 0,
                end,
            },
        })
    }

    /// Reads a ViewDefinition from JSON text.
    ///
    /// # Errors
    /// [`ErrorKind::Definition`](crate::ErrorKind::Definition) when the text is not JSON or
    /// not a valid ViewDefinition.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::definition(format!("the ViewDefinition is not JSON: {e}")))?;
        Self::from_json(&value)
    }

    /// The view's `name`, which names its table.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The view with `name` as its name (for a view without one, e.g. from its file name).
    ///
    /// # Errors
    /// [`ErrorKind::Definition`](crate::ErrorKind::Definition) when `name` is not a valid
    /// table name.
    pub fn with_name(mut self, name: &str) -> Result<Self> {
        if !sql_name(name) {
            return Err(Error::definition(format!(
                "`{name}` cannot name a table: use letters, digits and `_`, starting with a letter"
            )));
        }
        self.name = Some(name.to_owned());
        Ok(self)
    }

    /// The resource type the view reads.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The table's columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(view: Value) -> String {
        ViewDefinition::from_json(&view).unwrap_err().to_string()
    }

    #[test]
    fn column_order_and_types() {
        let view = ViewDefinition::from_json(&json!({
            "resource": "Patient",
            "name": "pts",
            "select": [
                {"column": [{"name": "a", "path": "'A'"}],
                 "select": [{"forEach": "name", "column": [{"name": "c", "path": "family", "type": "string"}]}],
                 "unionAll": [
                    {"column": [{"name": "e", "path": "active.exists()"}]},
                    {"column": [{"name": "e", "path": "false"}]}
                 ]},
                {"column": [{"name": "g", "path": "name.count()", "collection": false}]}
            ]
        }))
        .unwrap();
        let names: Vec<_> = view.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "e", "g"]);
        let types: Vec<_> = view
            .columns()
            .iter()
            .map(|c| c.fhir_type.as_deref())
            .collect();
        assert_eq!(
            types,
            [
                Some("string"),
                Some("string"),
                Some("boolean"),
                Some("integer")
            ]
        );
        assert_eq!(view.root.selects[0].union[1].columns[0].0, 2);
    }

    #[test]
    fn errors_name_the_element() {
        let cases = [
            (json!({}), "resource is missing"),
            (json!({"resource": "Patient"}), "select is missing"),
            (
                json!({"resource": "Patient", "select": [{"forEach": 1}]}),
                "select[0].forEach must be a string",
            ),
            (
                json!({"resource": "Patient", "select": [{"forEach": "@@"}]}),
                "select[0].forEach: `@@` is not valid FHIRPath",
            ),
            (
                json!({"resource": "Patient", "select": [{"column": [{"name": "a"}]}]}),
                "select[0].column[0].path is missing",
            ),
            (
                json!({"resource": "Patient", "select": [{"column": [{"name": "1a", "path": "id"}]}]}),
                "select[0].column[0].name `1a`",
            ),
            (
                json!({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "id", "colection": true}]}]}),
                "unknown member `colection`",
            ),
            (
                json!({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "id"}, {"name": "a", "path": "id"}]}]}),
                "select[0].column[1].name `a` is already the name of select[0].column[0]",
            ),
            (
                json!({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "name.foo()"}]}]}),
                "unknown function foo()",
            ),
            (
                json!({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "%x"}]}]}),
                "%x is not a constant",
            ),
            (
                json!({"resource": "Patient", "constant": [{"name": "x"}], "select": [{"column": [{"name": "a", "path": "%x"}]}]}),
                "constant[0] (`x`) has no value",
            ),
            (
                json!({"resource": "Patient", "select": [{"forEach": "a", "forEachOrNull": "b", "column": []}]}),
                "only one of forEach",
            ),
            (
                json!({"resource": "Patient", "select": [{"unionAll": [
                {"column": [{"name": "a", "path": "id"}, {"name": "b", "path": "id"}]},
                {"column": [{"name": "b", "path": "id"}, {"name": "a", "path": "id"}]}]}]}),
                "select[0].unionAll[1] has the columns (b, a), but unionAll[0] has (a, b)",
            ),
            (
                json!({"resource": "patient", "select": []}),
                "not a FHIR resource type",
            ),
            (
                json!({"resource": "Patient", "name": "my view", "select": [{"column": [{"name": "a", "path": "id"}]}]}),
                "name `my view`",
            ),
            (
                json!({"resource": "Patient", "select": [{"column": [{"name": "a", "path": "id"}]}], "where": [{"path": "name.("}]}),
                "where[0].path",
            ),
        ];
        for (view, expected) in cases {
            let message = error(view.clone());
            assert!(message.contains(expected), "{view}: {message}");
        }
    }
}
