//! FHIRPath text to an expression tree: a lexer and a precedence-climbing parser for the
//! subset views use. Function names, their argument counts and type specifiers are checked
//! here, so a view with a typo fails when it is loaded, not on the millionth resource.

use super::decimal::Decimal;
use super::temporal::{Temporal, TemporalKind};

/// A parsed FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// `{}`
    Empty,
    Bool(bool),
    Int(i64),
    Dec(Decimal),
    Str(String),
    Temporal(Temporal),
    /// `$this`
    This,
    /// `$index` inside `where`/`select`/`exists`/`all`
    IndexVar,
    /// `%rowIndex`
    RowIndex,
    /// `%resource`, `%rootResource`, `%context`
    Resource,
    /// Navigation to a member of each item of the target (or of `$this`).
    Member(Option<Box<Expr>>, String),
    /// A function called on the target (or on `$this`).
    Call(Option<Box<Expr>>, Func, Vec<Expr>),
    /// `target[index]`
    Index(Box<Expr>, Box<Expr>),
    /// Unary minus.
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `expr is Type` / `expr as Type`
    Is(Box<Expr>, String),
    As(Box<Expr>, String),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

/// The functions this engine knows, resolved when the expression is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Func {
    Where,
    Select,
    Repeat,
    Exists,
    All,
    Empty,
    HasValue,
    First,
    Last,
    Tail,
    Skip,
    Take,
    Single,
    Count,
    Distinct,
    Not,
    AllTrue,
    AnyTrue,
    AllFalse,
    AnyFalse,
    OfType(String),
    IsType(String),
    AsType(String),
    Extension,
    Join,
    GetResourceKey,
    GetReferenceKey(Option<String>),
    LowBoundary,
    HighBoundary,
    Iif,
    ToString,
    ToInteger,
    ToDecimal,
    ToBoolean,
    StartsWith,
    EndsWith,
    ContainsText,
    Substring,
    Lower,
    Upper,
    Length,
    Trim,
    Replace,
    Split,
    IndexOf,
    Children,
    Descendants,
    Abs,
    Round,
    Floor,
    Ceiling,
}

impl Func {
    /// The function named `name` with `args` arguments, or why not.
    fn resolve(name: &str, args: &[Expr]) -> Result<Func, String> {
        let count = args.len();
        let arity = |min: usize, max: usize, func: Func| {
            if (min..=max).contains(&count) {
                Ok(func)
            } else if min == max {
                Err(format!("{name}() takes {min} argument(s), not {count}"))
            } else {
                Err(format!(
                    "{name}() takes {min} to {max} arguments, not {count}"
                ))
            }
        };
        let type_arg = |func: fn(String) -> Func| -> Result<Func, String> {
            match args {
                [arg] => type_name(arg).map(func).ok_or_else(|| {
                    format!("{name}() needs a type name such as Quantity or string")
                }),
                _ => Err(format!(
                    "{name}() takes one type name, not {count} arguments"
                )),
            }
        };
        match name {
            "where" => arity(1, 1, Func::Where),
            "select" => arity(1, 1, Func::Select),
            "repeat" => arity(1, 1, Func::Repeat),
            "exists" => arity(0, 1, Func::Exists),
            "all" => arity(1, 1, Func::All),
            "empty" => arity(0, 0, Func::Empty),
            "hasValue" => arity(0, 0, Func::HasValue),
            "first" => arity(0, 0, Func::First),
            "last" => arity(0, 0, Func::Last),
            "tail" => arity(0, 0, Func::Tail),
            "skip" => arity(1, 1, Func::Skip),
            "take" => arity(1, 1, Func::Take),
            "single" => arity(0, 0, Func::Single),
            "count" => arity(0, 0, Func::Count),
            "distinct" => arity(0, 0, Func::Distinct),
            "not" => arity(0, 0, Func::Not),
            "allTrue" => arity(0, 0, Func::AllTrue),
            "anyTrue" => arity(0, 0, Func::AnyTrue),
            "allFalse" => arity(0, 0, Func::AllFalse),
            "anyFalse" => arity(0, 0, Func::AnyFalse),
            "ofType" => type_arg(Func::OfType),
            "is" => type_arg(Func::IsType),
            "as" => type_arg(Func::AsType),
            "extension" => arity(1, 1, Func::Extension),
            "join" => arity(0, 1, Func::Join),
            "getResourceKey" => arity(0, 0, Func::GetResourceKey),
            "getReferenceKey" => match args {
                [] => Ok(Func::GetReferenceKey(None)),
                [arg] => type_name(arg)
                    .map(|t| Func::GetReferenceKey(Some(t)))
                    .ok_or_else(|| {
                        "getReferenceKey() takes a resource type such as Patient".to_owned()
                    }),
                _ => Err(format!(
                    "getReferenceKey() takes at most one argument, not {count}"
                )),
            },
            "lowBoundary" => arity(0, 0, Func::LowBoundary),
            "highBoundary" => arity(0, 0, Func::HighBoundary),
            "iif" => arity(2, 3, Func::Iif),
            "toString" => arity(0, 0, Func::ToString),
            "toInteger" => arity(0, 0, Func::ToInteger),
            "toDecimal" => arity(0, 0, Func::ToDecimal),
            "toBoolean" => arity(0, 0, Func::ToBoolean),
            "startsWith" => arity(1, 1, Func::StartsWith),
            "endsWith" => arity(1, 1, Func::EndsWith),
            "contains" => arity(1, 1, Func::ContainsText),
            "substring" => arity(1, 2, Func::Substring),
            "lower" => arity(0, 0, Func::Lower),
            "upper" => arity(0, 0, Func::Upper),
            "length" => arity(0, 0, Func::Length),
            "trim" => arity(0, 0, Func::Trim),
            "replace" => arity(2, 2, Func::Replace),
            "split" => arity(1, 1, Func::Split),
            "indexOf" => arity(1, 1, Func::IndexOf),
            "children" => arity(0, 0, Func::Children),
            "descendants" => arity(0, 0, Func::Descendants),
            "abs" => arity(0, 0, Func::Abs),
            "round" => arity(0, 1, Func::Round),
            "floor" => arity(0, 0, Func::Floor),
            "ceiling" => arity(0, 0, Func::Ceiling),
            _ => Err(format!("unknown function {name}()")),
        }
    }
}

/// A type specifier argument: `Quantity`, `FHIR.Quantity`, `System.String`.
fn type_name(arg: &Expr) -> Option<String> {
    match arg {
        Expr::Member(None, name) => Some(name.clone()),
        Expr::Member(Some(namespace), name) => match &**namespace {
            Expr::Member(None, ns) if ns == "FHIR" || ns == "System" => Some(name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A syntax error: what and where (a character offset in the expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) offset: usize,
    pub(crate) message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    Quoted(String),
    Str(String),
    Int(i64),
    Dec(Decimal),
    Temporal(Temporal),
    Env(String),
    Special(&'static str),
    Sym(&'static str),
    End,
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

const SYMBOLS: [&str; 20] = [
    "<=", ">=", "!=", "!~", "(", ")", "[", "]", "{", "}", ".", ",", "=", "~", "<", ">", "+", "-",
    "*", "/",
];

impl Lexer<'_> {
    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            offset: self.pos,
            message: message.into(),
        })
    }

    fn next_token(&mut self) -> Result<(usize, Token), ParseError> {
        let bytes = self.text.as_bytes();
        loop {
            while self.pos < bytes.len() && bytes[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.text[self.pos..].starts_with("//") {
                while self.pos < bytes.len() && bytes[self.pos] != b'\n' {
                    self.pos += 1;
                }
                continue;
            }
            if self.text[self.pos..].starts_with("/*") {
                match self.text[self.pos + 2..].find("*/") {
                    Some(end) => self.pos += end + 4,
                    None => return self.error("a comment is not closed"),
                }
                continue;
            }
            break;
        }
        let start = self.pos;
        let Some(&c) = bytes.get(self.pos) else {
            return Ok((start, Token::End));
        };
        let token = match c {
            b'\'' => Token::Str(self.quoted(b'\'')?),
            b'`' => Token::Quoted(self.quoted(b'`')?),
            b'%' => {
                self.pos += 1;
                match bytes.get(self.pos) {
                    Some(b'`') => Token::Env(self.quoted(b'`')?),
                    Some(b'\'') => Token::Env(self.quoted(b'\'')?),
                    _ => {
                        let name = self.word();
                        if name.is_empty() {
                            return self.error("`%` needs a name");
                        }
                        Token::Env(name.to_owned())
                    }
                }
            }
            b'$' => {
                self.pos += 1;
                let word = self.word().to_owned();
                match word.as_str() {
                    "this" => Token::Special("this"),
                    "index" => Token::Special("index"),
                    "total" => Token::Special("total"),
                    _ => return self.error(format!("unknown variable ${word}")),
                }
            }
            b'@' => {
                self.pos += 1;
                let rest = &self.text[self.pos..];
                let len = rest
                    .find(|ch: char| {
                        !(ch.is_ascii_alphanumeric() || matches!(ch, '-' | ':' | '.' | '+'))
                    })
                    .unwrap_or(rest.len());
                let literal = &rest[..len];
                self.pos += len;
                let value = if let Some(time) = literal.strip_prefix('T') {
                    Temporal::parse_time(time)
                } else if literal.contains('T') {
                    let trimmed = literal.strip_suffix('T').unwrap_or(literal);
                    Temporal::parse_date_time(trimmed, TemporalKind::DateTime)
                } else {
                    Temporal::parse_date_time(literal, TemporalKind::Date)
                };
                match value {
                    Some(value) => Token::Temporal(value),
                    None => {
                        return self
                            .error(format!("`@{literal}` is not a date, date-time or time"));
                    }
                }
            }
            b'0'..=b'9' => {
                let rest = &self.text[self.pos..];
                let mut len = rest.bytes().take_while(u8::is_ascii_digit).count();
                let mut decimal = false;
                if rest.as_bytes().get(len) == Some(&b'.')
                    && rest.as_bytes().get(len + 1).is_some_and(u8::is_ascii_digit)
                {
                    decimal = true;
                    len += 1 + rest[len + 1..]
                        .bytes()
                        .take_while(u8::is_ascii_digit)
                        .count();
                }
                let number = &rest[..len];
                self.pos += len;
                if decimal {
                    match Decimal::parse(number) {
                        Some(d) => Token::Dec(d),
                        None => return self.error(format!("`{number}` is too large a decimal")),
                    }
                } else {
                    match number.parse::<i64>() {
                        Ok(n) => Token::Int(n),
                        Err(_) => return self.error(format!("`{number}` is too large an integer")),
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => Token::Ident(self.word().to_owned()),
            _ => {
                let rest = &self.text[self.pos..];
                if let Some(symbol) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
                    self.pos += symbol.len();
                    Token::Sym(symbol)
                } else if rest.starts_with('|') {
                    self.pos += 1;
                    Token::Sym("|")
                } else if rest.starts_with('&') {
                    self.pos += 1;
                    Token::Sym("&")
                } else {
                    let ch = rest.chars().next().unwrap_or(' ');
                    return self.error(format!("unexpected character `{ch}`"));
                }
            }
        };
        Ok((start, token))
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        while self
            .text
            .as_bytes()
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// A string or identifier between `quote`s, with FHIRPath escapes.
    fn quoted(&mut self, quote: u8) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.text[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c as u32 == quote as u32 {
                self.pos += i + 1;
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, 'f')) => out.push('\u{c}'),
                Some((j, 'u')) => {
                    let hex = self.text.get(self.pos + j + 1..self.pos + j + 5);
                    match hex
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32)
                    {
                        Some(ch) => out.push(ch),
                        None => {
                            self.pos = start;
                            return self.error("a `\\u` escape needs four hex digits");
                        }
                    }
                    for _ in 0..4 {
                        chars.next();
                    }
                }
                Some((_, other)) => out.push(other),
                None => break,
            }
        }
        self.pos = start;
        self.error(if quote == b'\'' {
            "a string is not closed"
        } else {
            "a quoted identifier is not closed"
        })
    }
}

/// Parses a whole expression. `%name` constants are looked up with `constant`, which returns
/// the literal to put in their place or `None` when the name is unknown.
pub(crate) fn parse(
    text: &str,
    constant: &dyn Fn(&str) -> Option<Expr>,
) -> Result<Expr, ParseError> {
    let mut lexer = Lexer { text, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        let (offset, token) = lexer.next_token()?;
        let end = token == Token::End;
        tokens.push((offset, token));
        if end {
            break;
        }
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        constant,
    };
    if parser.peek() == &Token::End {
        return Err(ParseError {
            offset: 0,
            message: "the expression is empty".to_owned(),
        });
    }
    let expr = parser.expression(0)?;
    match parser.peek() {
        Token::End => Ok(expr),
        _ => parser.error("unexpected text after the expression"),
    }
}

struct Parser<'c> {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    constant: &'c dyn Fn(&str) -> Option<Expr>,
}

/// Binary operators by precedence level (higher binds tighter).
fn binary_op(token: &Token) -> Option<(u8, BinOp)> {
    let op = match token {
        Token::Ident(word) => match word.as_str() {
            "implies" => (1, BinOp::Implies),
            "or" => (2, BinOp::Or),
            "xor" => (2, BinOp::Xor),
            "and" => (3, BinOp::And),
            "in" => (4, BinOp::In),
            "contains" => (4, BinOp::Contains),
            "div" => (10, BinOp::IntDiv),
            "mod" => (10, BinOp::Mod),
            _ => return None,
        },
        Token::Sym(sym) => match *sym {
            "=" => (5, BinOp::Eq),
            "!=" => (5, BinOp::Ne),
            "~" => (5, BinOp::Equiv),
            "!~" => (5, BinOp::NotEquiv),
            "<" => (6, BinOp::Lt),
            ">" => (6, BinOp::Gt),
            "<=" => (6, BinOp::Le),
            ">=" => (6, BinOp::Ge),
            "|" => (7, BinOp::Union),
            "+" => (9, BinOp::Add),
            "-" => (9, BinOp::Sub),
            "&" => (9, BinOp::Concat),
            "*" => (10, BinOp::Mul),
            "/" => (10, BinOp::Div),
            _ => return None,
        },
        _ => return None,
    };
    Some(op)
}

/// The level of `is` / `as` (between `|` and `+`).
const TYPE_LEVEL: u8 = 8;

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos].1
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos].0
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.pos].1.clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            offset: self.offset(),
            message: message.into(),
        })
    }

    fn expect(&mut self, sym: &'static str) -> Result<(), ParseError> {
        if self.peek() == &Token::Sym(sym) {
            self.advance();
            Ok(())
        } else {
            self.error(format!("expected `{sym}`"))
        }
    }

    fn expression(&mut self, min_level: u8) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let token = self.peek().clone();
            if let Token::Ident(word) = &token {
                if (word == "is" || word == "as") && TYPE_LEVEL >= min_level {
                    self.advance();
                    let name = self.type_specifier()?;
                    left = if word == "is" {
                        Expr::Is(Box::new(left), name)
                    } else {
                        Expr::As(Box::new(left), name)
                    };
                    continue;
                }
            }
            let Some((level, op)) = binary_op(&token) else {
                break;
            };
            if level < min_level {
                break;
            }
            self.advance();
            let right = self.expression(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn type_specifier(&mut self) -> Result<String, ParseError> {
        let mut name = match self.advance() {
            Token::Ident(name) | Token::Quoted(name) => name,
            _ => return self.error("expected a type name"),
        };
        if self.peek() == &Token::Sym(".") {
            if name != "FHIR" && name != "System" {
                return self.error("a type name has at most a FHIR. or System. namespace");
            }
            self.advance();
            name = match self.advance() {
                Token::Ident(name) | Token::Quoted(name) => name,
                _ => return self.error("expected a type name"),
            };
        }
        Ok(name)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Token::Sym("-") => {
                self.advance();
                let operand = self.unary()?;
                Ok(match operand {
                    Expr::Int(n) => Expr::Int(-n),
                    other => Expr::Neg(Box::new(other)),
                })
            }
            Token::Sym("+") => {
                self.advance();
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.term()?;
        loop {
            match self.peek() {
                Token::Sym(".") => {
                    self.advance();
                    expr = self.invocation(Some(expr))?;
                }
                Token::Sym("[") => {
                    self.advance();
                    let index = self.expression(0)?;
                    self.expect("]")?;
                    expr = Expr::Index(Box::new(expr), Box::new(index));
                }
                _ => return Ok(expr),
            }
        }
    }

    /// A member or function call on `target` (or on the focus when `None`).
    fn invocation(&mut self, target: Option<Expr>) -> Result<Expr, ParseError> {
        let offset = self.offset();
        let name = match self.advance() {
            Token::Ident(name) | Token::Quoted(name) => name,
            Token::Special("this") if target.is_none() => return Ok(Expr::This),
            _ => return self.error("expected a member or function name"),
        };
        if self.peek() != &Token::Sym("(") {
            return Ok(Expr::Member(target.map(Box::new), name));
        }
        self.advance();
        let mut args = Vec::new();
        if self.peek() != &Token::Sym(")") {
            loop {
                args.push(self.expression(0)?);
                if self.peek() == &Token::Sym(",") {
                    self.advance();
                } else {
                    break;
                }
            }
        }
        self.expect(")")?;
        let func = Func::resolve(&name, &args).map_err(|message| ParseError { offset, message })?;
        // Type specifiers were read as arguments; they are kept in the function itself.
        let args = match func {
            Func::OfType(_) | Func::IsType(_) | Func::AsType(_) | Func::GetReferenceKey(_) => {
                Vec::new()
            }
            _ => args,
        };
        Ok(Expr::Call(target.map(Box::new), func, args))
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let offset = self.offset();
        match self.peek().clone() {
            Token::Ident(word) => match word.as_str() {
                "true" => {
                    self.advance();
                    Ok(Expr::Bool(true))
                }
                "false" => {
                    self.advance();
                    Ok(Expr::Bool(false))
                }
                _ => self.invocation(None),
            },
            Token::Quoted(_) => self.invocation(None),
            Token::Str(s) => {
                self.advance();
                Ok(Expr::Str(s))
            }
            Token::Int(n) => {
                self.advance();
                Ok(Expr::Int(n))
            }
            Token::Dec(d) => {
                self.advance();
                Ok(Expr::Dec(d))
            }
            Token::Temporal(t) => {
                self.advance();
                Ok(Expr::Temporal(t))
            }
            Token::Special("this") => {
                self.advance();
                Ok(Expr::This)
            }
            Token::Special("index") => {
                self.advance();
                Ok(Expr::IndexVar)
            }
            Token::Special(_) => {
                self.error("$total is only defined in aggregate(), which views do not use")
            }
            Token::Env(name) => {
                self.advance();
                match name.as_str() {
                    "rowIndex" => Ok(Expr::RowIndex),
                    "resource" | "rootResource" | "context" => Ok(Expr::Resource),
                    _ => match (self.constant)(&name) {
                        Some(expr) => Ok(expr),
                        None => Err(ParseError {
                            offset,
                            message: format!("%{name} is not a constant of this view"),
                        }),
                    },
                }
            }
            Token::Sym("(") => {
                self.advance();
                let inner = self.expression(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::Sym("{") => {
                self.advance();
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Token::End => self.error("the expression ends too early"),
            Token::Sym(sym) => self.error(format!("unexpected `{sym}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Expr, ParseError> {
        parse(text, &|name| {
            (name == "code").then(|| Expr::Str("8480-6".to_owned()))
        })
    }

    fn member(target: Option<Expr>, name: &str) -> Expr {
        Expr::Member(target.map(Box::new), name.to_owned())
    }

    #[test]
    fn paths_calls_and_precedence() {
        assert_eq!(
            p("name.family").unwrap(),
            member(Some(member(None, "name")), "family")
        );
        assert_eq!(
            p("a = 1 and b or c").unwrap(),
            Expr::Binary(
                BinOp::Or,
                Box::new(Expr::Binary(
                    BinOp::And,
                    Box::new(Expr::Binary(
                        BinOp::Eq,
                        Box::new(member(None, "a")),
                        Box::new(Expr::Int(1))
                    )),
                    Box::new(member(None, "b"))
                )),
                Box::new(member(None, "c"))
            )
        );
        assert_eq!(
            p("value.ofType(FHIR.Quantity)").unwrap(),
            Expr::Call(
                Some(Box::new(member(None, "value"))),
                Func::OfType("Quantity".into()),
                vec![]
            )
        );
        assert_eq!(
            p("code.coding.exists(code = %code)").unwrap(),
            Expr::Call(
                Some(Box::new(member(Some(member(None, "code")), "coding"))),
                Func::Exists,
                vec![Expr::Binary(
                    BinOp::Eq,
                    Box::new(member(None, "code")),
                    Box::new(Expr::Str("8480-6".into()))
                )]
            )
        );
        assert_eq!(
            p("1 + 2 * 3").unwrap(),
            Expr::Binary(
                BinOp::Add,
                Box::new(Expr::Int(1)),
                Box::new(Expr::Binary(
                    BinOp::Mul,
                    Box::new(Expr::Int(2)),
                    Box::new(Expr::Int(3))
                ))
            )
        );
        assert!(
            matches!(p("name[0].`family`").unwrap(), Expr::Member(Some(_), n) if n == "family")
        );
        assert!(matches!(
            p("@2020-01-02T10:00:00Z").unwrap(),
            Expr::Temporal(_)
        ));
        assert!(matches!(p("'a\\'b'").unwrap(), Expr::Str(s) if s == "a'b"));
        assert_eq!(p("%rowIndex").unwrap(), Expr::RowIndex);
        assert!(matches!(p("x is Quantity").unwrap(), Expr::Is(_, t) if t == "Quantity"));
    }

    #[test]
    fn errors_say_what_and_where() {
        let cases = [
            ("@@", 1, "is not a date"),
            ("name.", 5, "expected a member"),
            ("name.foo()", 5, "unknown function foo()"),
            ("first(1)", 0, "first() takes 0"),
            ("'abc", 0, "not closed"),
            ("%nope", 0, "%nope is not a constant"),
            ("ofType(1)", 0, "needs a type name"),
            ("a b", 2, "unexpected text"),
            ("", 0, "empty"),
            ("(a", 2, "expected `)`"),
        ];
        for (text, offset, message) in cases {
            let error = p(text).unwrap_err();
            assert!(error.message.contains(message), "{text}: {error:?}");
            assert_eq!(error.offset, offset, "{text}: {error:?}");
        }
    }
}
