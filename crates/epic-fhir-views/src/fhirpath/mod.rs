//! The FHIRPath subset that SQL on FHIR views need (the Shareable View Definition profile's
//! list and more): paths with choice types, literals, constants, `$this`, `%rowIndex`,
//! boolean logic, comparison, arithmetic, `where`/`select`/`exists`/`empty`/`first`/`ofType`/
//! `extension`/`join`/`getResourceKey`/`getReferenceKey`/`lowBoundary`/`highBoundary` and the
//! common string, collection and conversion functions.
//!
//! Why not an existing engine: see ARCHITECTURE.md ("FHIRPath engine"). In short, the Rust
//! engines evaluate over typed resource models or an async model provider, and views need to
//! run over raw JSON at hundreds of MB/s.

mod decimal;
mod eval;
mod parse;
mod temporal;

pub(crate) use decimal::Decimal;
pub(crate) use eval::{Env, Item};
pub(crate) use parse::{BinOp, Expr, Func, parse};
pub(crate) use temporal::{Temporal, TemporalKind};

/// The FHIR type an expression is known to return, when it is known without a model:
/// spec rules 3 and 4 of column type inference (functions with a fixed return type, and
/// `ofType()`).
pub(crate) fn static_type(expr: &Expr) -> Option<String> {
    let known = |name: &str| Some(name.to_owned());
    match expr {
        Expr::Bool(_) | Expr::Is(..) => known("boolean"),
        Expr::Int(_) | Expr::RowIndex | Expr::IndexVar => known("integer"),
        Expr::Dec(_) => known("decimal"),
        Expr::Str(_) => known("string"),
        Expr::Temporal(t) => known(match t.kind {
            TemporalKind::Date => "date",
            TemporalKind::DateTime => "dateTime",
            TemporalKind::Time => "time",
        }),
        Expr::As(_, name) => Some(name.clone()),
        Expr::Binary(op, left, right) => match op {
            BinOp::Lt
            | BinOp::Gt
            | BinOp::Le
            | BinOp::Ge
            | BinOp::Eq
            | BinOp::Ne
            | BinOp::Equiv
            | BinOp::NotEquiv
            | BinOp::In
            | BinOp::Contains
            | BinOp::And
            | BinOp::Or
            | BinOp::Xor
            | BinOp::Implies => known("boolean"),
            BinOp::Concat => known("string"),
            BinOp::IntDiv | BinOp::Mod | BinOp::Add | BinOp::Sub | BinOp::Mul => {
                match (static_type(left).as_deref(), static_type(right).as_deref()) {
                    (Some("integer"), Some("integer")) => known("integer"),
                    (Some("decimal" | "integer"), Some("decimal" | "integer")) => known("decimal"),
                    (Some("string"), Some("string")) if *op == BinOp::Add => known("string"),
                    _ => None,
                }
            }
            BinOp::Div => known("decimal"),
            BinOp::Union => None,
        },
        Expr::Call(target, func, args) => match func {
            Func::Exists
            | Func::All
            | Func::Empty
            | Func::HasValue
            | Func::Not
            | Func::AllTrue
            | Func::AnyTrue
            | Func::AllFalse
            | Func::AnyFalse
            | Func::IsType(_)
            | Func::StartsWith
            | Func::EndsWith
            | Func::ContainsText
            | Func::ToBoolean => known("boolean"),
            Func::Count
            | Func::Length
            | Func::IndexOf
            | Func::ToInteger
            | Func::Floor
            | Func::Ceiling => known("integer"),
            Func::ToDecimal => known("decimal"),
            Func::Join
            | Func::ToString
            | Func::GetResourceKey
            | Func::GetReferenceKey(_)
            | Func::Lower
            | Func::Upper
            | Func::Trim
            | Func::Substring
            | Func::Replace => known("string"),
            Func::OfType(name) | Func::AsType(name) => Some(name.clone()),
            Func::First
            | Func::Last
            | Func::Single
            | Func::Where
            | Func::Tail
            | Func::Skip
            | Func::Take
            | Func::Distinct
            | Func::Abs
            | Func::Round
            | Func::LowBoundary
            | Func::HighBoundary => target.as_deref().and_then(static_type),
            Func::Iif => {
                let a = args.get(1).and_then(static_type);
                let b = args.get(2).and_then(static_type);
                if args.len() < 3 || a == b { a } else { None }
            }
            _ => None,
        },
        Expr::Neg(inner) => static_type(inner),
        _ => None,
    }
}
