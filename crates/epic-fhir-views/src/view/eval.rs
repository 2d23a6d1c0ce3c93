//! A view's rows for one resource: `where`, then the selects with their iterations, cross
//! products of sibling selects, and unions.

use std::borrow::Cow;

use super::definition::{Iteration, Labeled, Select, ViewDefinition};
use crate::fhirpath::{Decimal, Env, Item};
use crate::json::{Doc, Kind, NodeId};

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell<'e> {
    Null,
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    /// A number as written in the resource (kept as text so its precision survives).
    Number(&'e str),
    Str(Cow<'e, str>),
    /// An object or array, as its JSON text.
    Json(&'e str),
    List(Vec<Cell<'e>>),
}

/// A row: one cell per column of the view, in order.
pub(crate) type Row<'e> = Vec<Cell<'e>>;

/// Why a resource could not be turned into rows: the element at fault and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowError {
    pub(crate) element: String,
    pub(crate) message: String,
}

type Result<T> = std::result::Result<T, RowError>;

impl ViewDefinition {
    /// Appends the rows of `resource` (the root of `doc`) to `out`; nothing when a `where`
    /// excludes it. The caller checks the resource type.
    pub(crate) fn rows<'e>(&'e self, doc: Doc<'e>, out: &mut Vec<Row<'e>>) -> Result<()> {
        let env = Env {
            doc,
            resource: doc.root(),
            row_index: 0,
        };
        let focus = [Item::Node(doc.root(), None)];
        for clause in &self.wheres {
            let value = env
                .eval(&clause.expr, &focus)
                .map_err(|e| failure(clause, e.0))?;
            match value.as_slice() {
                [] => return Ok(()),
                [Item::Bool(true)] => {}
                [Item::Bool(false)] => return Ok(()),
                [Item::Node(node, _)] if doc.kind(*node) == Kind::Bool => {
                    if !doc.bool_value(*node) {
                        return Ok(());
                    }
                }
                _ => {
                    return Err(failure(
                        clause,
                        format!(
                            "a where path must give true, false or nothing, but gave {}",
                            describe(&env, &value)
                        ),
                    ));
                }
            }
        }
        let mut rows = Vec::new();
        self.select_rows(&self.root, &env, &focus, &mut rows)?;
        out.extend(rows);
        Ok(())
    }

    fn select_rows<'e>(
        &'e self,
        select: &'e Select,
        env: &Env<'e>,
        focus: &[Item<'e>],
        out: &mut Vec<Row<'e>>,
    ) -> Result<()> {
        match &select.iteration {
            Iteration::None => self.focus_rows(select, env, focus, out),
            Iteration::ForEach(path) | Iteration::ForEachOrNull(path) => {
                let items = env
                    .eval(&path.expr, focus)
                    .map_err(|e| failure(path, e.0))?;
                if items.is_empty() {
                    if matches!(select.iteration, Iteration::ForEachOrNull(_)) {
                        // The columns see an empty focus (so paths give null, and %rowIndex
                        // 0); if nested iterations leave no row, one row of nulls remains.
                        let env = Env {
                            row_index: 0,
                            ..*env
                        };
                        let before = out.len();
                        self.focus_rows(select, &env, &[], out)?;
                        if out.len() == before {
                            out.push(vec![Cell::Null; select.end - select.start]);
                        }
                    }
                    return Ok(());
                }
                for (i, item) in items.iter().enumerate() {
                    let env = Env {
                        row_index: i as i64,
                        ..*env
                    };
                    self.focus_rows(select, &env, std::slice::from_ref(item), out)?;
                }
                Ok(())
            }
            Iteration::Repeat(paths) => {
                let mut items = Vec::new();
                for item in focus {
                    repeat(env, paths, item, &mut items, 0)?;
                }
                for (i, item) in items.iter().enumerate() {
                    let env = Env {
                        row_index: i as i64,
                        ..*env
                    };
                    self.focus_rows(select, &env, std::slice::from_ref(item), out)?;
                }
                Ok(())
            }
        }
    }

    /// The rows of `select` for one focus: its own columns times each nested select's rows
    /// times the union's rows.
    fn focus_rows<'e>(
        &'e self,
        select: &'e Select,
        env: &Env<'e>,
        focus: &[Item<'e>],
        out: &mut Vec<Row<'e>>,
    ) -> Result<()> {
        let mut own = Vec::with_capacity(select.end - select.start);
        for (index, path) in &select.columns {
            let items = env
                .eval(&path.expr, focus)
                .map_err(|e| failure(path, e.0))?;
            let column = &self.columns()[*index];
            let cell = if column.collection {
                Cell::List(items.iter().map(|item| cell(env, item)).collect())
            } else {
                match items.as_slice() {
                    [] => Cell::Null,
                    [item] => cell(env, item),
                    _ => {
                        return Err(RowError {
                            element: path.element.clone(),
                            message: format!(
                                "column `{}` got {} values ({}); set \"collection\": true on it, or pick one (e.g. with first())",
                                column.name,
                                items.len(),
                                describe(env, &items)
                            ),
                        });
                    }
                }
            };
            own.push(cell);
        }
        let mut product = vec![own];
        for nested in &select.selects {
            let mut rows = Vec::new();
            self.select_rows(nested, env, focus, &mut rows)?;
            product = cross(product, &rows);
            if product.is_empty() {
                return Ok(());
            }
        }
        if !select.union.is_empty() {
            let mut rows = Vec::new();
            for branch in &select.union {
                self.select_rows(branch, env, focus, &mut rows)?;
            }
            product = cross(product, &rows);
        }
        out.extend(product);
        Ok(())
    }
}

/// Every row of `left` followed by every row of `right`.
fn cross<'e>(left: Vec<Row<'e>>, right: &[Row<'e>]) -> Vec<Row<'e>> {
    if right.len() == 1 {
        let mut left = left;
        for row in &mut left {
            row.extend(right[0].iter().cloned());
        }
        return left;
    }
    let mut out = Vec::with_capacity(left.len() * right.len());
    for l in &left {
        for r in right {
            let mut row = Vec::with_capacity(l.len() + r.len());
            row.extend(l.iter().cloned());
            row.extend(r.iter().cloned());
            out.push(row);
        }
    }
    out
}

/// The items under `item` along `paths`, at every depth, depth first.
fn repeat<'e>(
    env: &Env<'e>,
    paths: &'e [Labeled],
    item: &Item<'e>,
    out: &mut Vec<Item<'e>>,
    depth: usize,
) -> Result<()> {
    if depth > 256 {
        return Err(failure(
            &paths[0],
            "repeat went deeper than 256 levels".to_owned(),
        ));
    }
    for path in paths {
        let children = env
            .eval(&path.expr, std::slice::from_ref(item))
            .map_err(|e| failure(path, e.0))?;
        for child in children {
            out.push(child.clone());
            repeat(env, paths, &child, out, depth + 1)?;
        }
    }
    Ok(())
}

fn failure(path: &Labeled, message: String) -> RowError {
    RowError {
        element: path.element.clone(),
        message,
    }
}

/// The cell for one item.
fn cell<'e>(env: &Env<'e>, item: &Item<'e>) -> Cell<'e> {
    match item {
        Item::Node(node, _) => node_cell(env.doc, *node),
        Item::Bool(b) => Cell::Bool(*b),
        Item::Int(n) => Cell::Int(*n),
        Item::Dec(d) => Cell::Dec(*d),
        Item::Str(s) => Cell::Str(s.clone()),
        Item::Temporal(t) => Cell::Str(Cow::Owned(t.to_fhir_string())),
    }
}

fn node_cell<'e>(doc: Doc<'e>, node: NodeId) -> Cell<'e> {
    match doc.kind(node) {
        Kind::Null => Cell::Null,
        Kind::Bool => Cell::Bool(doc.bool_value(node)),
        Kind::Number => Cell::Number(doc.raw(node)),
        Kind::String => Cell::Str(doc.str_value(node)),
        Kind::Object | Kind::Array => Cell::Json(doc.json_text(node)),
    }
}

/// What a collection holds, by kind only: error messages end up in logs, and resource
/// values are patient data.
fn describe(env: &Env<'_>, items: &[Item<'_>]) -> String {
    let kinds: Vec<&str> = items
        .iter()
        .take(3)
        .map(|item| match cell(env, item) {
            Cell::Str(_) => "a string",
            Cell::Json(_) => "an object",
            Cell::Number(_) | Cell::Int(_) | Cell::Dec(_) => "a number",
            Cell::Bool(_) => "a boolean",
            Cell::Null | Cell::List(_) => "null",
        })
        .collect();
    let more = if items.len() > 3 { ", …" } else { "" };
    format!("{}{more}", kinds.join(", "))
}
