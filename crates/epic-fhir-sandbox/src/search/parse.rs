//! Turning query pairs into a [`ParsedSearch`]: parameter lookup, modifiers, value parsing,
//! control parameters, warnings for ignored parameters and errors for malformed ones.

use time::OffsetDateTime;

use super::date::{DatePredicate, Prefix, parse_date, split_prefix};
use super::escape::{split_first_unescaped, split_unescaped, unescape};
use super::reference::split_reference;
use super::registry::{ParamDef, ParamKind, TypeSchema, schema};
use super::text::normalize;
use crate::store::is_valid_type_name;

/// Why a search request was refused (the server answers HTTP 400 with an OperationOutcome).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("search parameter `{param}`: {message}")]
pub struct SearchError {
    param: String,
    message: String,
    epic_code: Option<u32>,
}

impl SearchError {
    pub(crate) fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        SearchError {
            param: param.into(),
            message: message.into(),
            epic_code: None,
        }
    }

    pub(crate) fn with_epic_code(mut self, code: u32) -> Self {
        self.epic_code = Some(code);
        self
    }

    /// The parameter at fault, as written in the query (with its modifier, if any).
    pub fn param(&self) -> &str {
        &self.param
    }

    /// What is wrong, in a sentence that names the offending value.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The Epic error code for rule violations (4111 required search parameter missing, 4110
    /// no parameters at all); `None` for plain syntax errors.
    pub fn epic_code(&self) -> Option<u32> {
        self.epic_code
    }
}

/// A parameter that was ignored (the server reports each as an Epic 4122 warning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchWarning {
    param: String,
    message: String,
}

impl SearchWarning {
    pub(crate) fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        SearchWarning {
            param: param.into(),
            message: message.into(),
        }
    }

    /// The ignored parameter, as written in the query.
    pub fn param(&self) -> &str {
        &self.param
    }

    /// Why it was ignored.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The `_summary` control parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    /// `true`: only the elements marked as summary.
    True,
    /// `text`: text, id, meta and mandatory elements.
    Text,
    /// `data`: everything but the narrative.
    Data,
    /// `count`: only the total, no entries.
    Count,
    /// `false`: the full resources.
    False,
}

/// The `_total` control parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotalMode {
    /// `none`: no total is needed.
    None,
    /// `estimate`: an estimate will do.
    Estimate,
    /// `accurate`: the exact count is wanted.
    Accurate,
}

/// One `_sort` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub(crate) param: &'static ParamDef,
    pub(crate) target: Target,
    pub(crate) descending: bool,
}

impl SortKey {
    /// The parameter sorted on.
    pub fn name(&self) -> &'static str {
        self.param.name()
    }

    /// True for a `-name` key.
    pub fn descending(&self) -> bool {
        self.descending
    }
}

/// One `_include` or `_revinclude` directive: `Source:param[:Target]`, or `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    source_type: String,
    param: Option<&'static ParamDef>,
    target_type: Option<String>,
    iterate: bool,
    /// The reference slots of the source type to follow, each with the parameter's own
    /// target restriction.
    pub(crate) slots: Vec<(u8, Option<&'static str>)>,
}

impl Include {
    /// The type whose references are followed (`Observation` in `Observation:patient`).
    pub fn source_type(&self) -> &str {
        &self.source_type
    }

    /// The reference parameter followed, or `*` for every reference parameter.
    pub fn param(&self) -> &str {
        self.param.map_or("*", ParamDef::name)
    }

    /// The target type restriction (`Patient` in `Observation:subject:Patient`).
    pub fn target_type(&self) -> Option<&str> {
        self.target_type.as_deref()
    }

    /// True for `_include:iterate` / `_revinclude:iterate`, which also apply to included
    /// resources, repeatedly.
    pub fn iterate(&self) -> bool {
        self.iterate
    }
}

/// What a clause compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The resource's logical id (`_id`).
    Id,
    /// The store-assigned `meta.lastUpdated` (`_lastUpdated`).
    LastUpdated,
    /// An index slot.
    Slot(u8),
}

/// How a token value names its system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SystemQuery {
    /// `code`: any system, or none.
    Any,
    /// `|code`: the value must have no system.
    NoSystem,
    /// `system|code` or `system|`: exactly this system.
    Exact(String),
}

/// One token search value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenQuery {
    pub(crate) system: SystemQuery,
    /// `None` for `system|`, which matches any code in the system.
    pub(crate) code: Option<String>,
}

/// One reference search value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RefQuery {
    /// `None` when the value is a bare id on a parameter that may point at several types.
    pub(crate) resource_type: Option<String>,
    pub(crate) id: String,
}

/// How a string value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StringMode {
    /// Default: the normalised value starts with the normalised query.
    StartsWith,
    /// `:contains`: the normalised value contains the normalised query.
    Contains,
    /// `:exact`: the value equals the query, case and accents included.
    Exact,
}

/// One quantity search value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QuantityQuery {
    pub(crate) prefix: Prefix,
    pub(crate) value: f64,
    /// The implicit range of the value's precision: `5.4` means [5.35, 5.45).
    pub(crate) low: f64,
    pub(crate) high: f64,
    pub(crate) system: Option<String>,
    pub(crate) code: Option<String>,
}

/// The test one clause applies; the values inside are OR-ed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Test {
    /// `:missing=true|false`.
    Missing(bool),
    /// `_id`, possibly `:not`.
    Id { ids: Vec<String>, negate: bool },
    /// Date values with prefixes.
    Date(Vec<DatePredicate>),
    /// Token values, possibly `:not` (then no value may match any of them).
    Token {
        values: Vec<TokenQuery>,
        negate: bool,
    },
    /// `:text` on a token: normalised display text, matched at word starts.
    TokenText(Vec<String>),
    /// Reference values.
    Reference(Vec<RefQuery>),
    /// String values (normalised unless `Exact`).
    String {
        mode: StringMode,
        values: Vec<String>,
    },
    /// Quantity values.
    Quantity(Vec<QuantityQuery>),
}

/// One search parameter occurrence; clauses are AND-ed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Clause {
    pub(crate) param: &'static ParamDef,
    pub(crate) target: Target,
    pub(crate) test: Test,
}

/// A parsed, validated search request for one resource type.
///
/// The matching clauses are private; [`crate::store::Store::search`] evaluates them. The
/// control parameters are exposed for the server, which applies paging, `_elements`,
/// `_summary` and the like itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSearch {
    resource_type: String,
    pub(crate) clauses: Vec<Clause>,
    count: Option<usize>,
    sort: Vec<SortKey>,
    includes: Vec<Include>,
    revincludes: Vec<Include>,
    elements: Option<Vec<String>>,
    summary: Option<Summary>,
    total: Option<TotalMode>,
    format: Option<String>,
    pretty: Option<bool>,
    session_id: Option<String>,
    pub(crate) warnings: Vec<SearchWarning>,
}

impl ParsedSearch {
    /// The resource type searched.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The parameters that were ignored, in query order.
    pub fn warnings(&self) -> &[SearchWarning] {
        &self.warnings
    }

    /// `_count`: the requested page size (a positive integer; the server caps it).
    pub fn count(&self) -> Option<usize> {
        self.count
    }

    /// `_sort` keys, in priority order (empty: creation order).
    pub fn sort(&self) -> &[SortKey] {
        &self.sort
    }

    /// `_include` directives.
    pub fn includes(&self) -> &[Include] {
        &self.includes
    }

    /// `_revinclude` directives.
    pub fn revincludes(&self) -> &[Include] {
        &self.revincludes
    }

    /// `_elements`: the element names to keep, if the request limited them.
    pub fn elements(&self) -> Option<&[String]> {
        self.elements.as_deref()
    }

    /// `_summary`.
    pub fn summary(&self) -> Option<Summary> {
        self.summary
    }

    /// `_total`.
    pub fn total(&self) -> Option<TotalMode> {
        self.total
    }

    /// `_format`, verbatim.
    pub fn format(&self) -> Option<&str> {
        self.format.as_deref()
    }

    /// `_pretty`.
    pub fn pretty(&self) -> Option<bool> {
        self.pretty
    }

    /// `sessionID`: the paging session a `next` link points at.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// True when the query has at least one clause on the named parameter (any modifier).
    pub fn has_param(&self, name: &str) -> bool {
        self.clauses
            .iter()
            .any(|clause| clause.param.name() == name)
    }

    /// Removes every clause and sort key on the parameter `name`, returning how many were
    /// removed.
    pub(crate) fn remove_param(&mut self, name: &str) -> usize {
        let before = self.clauses.len() + self.sort.len();
        self.clauses.retain(|clause| clause.param.name() != name);
        self.sort.retain(|key| key.param.name() != name);
        before - self.clauses.len() - self.sort.len()
    }

    /// True when the query has no matching clause at all (control parameters aside).
    pub fn has_no_criteria(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Removes the `_revinclude` directives that `keep` rejects, returning them.
    pub(crate) fn retain_revincludes(&mut self, keep: impl Fn(&Include) -> bool) -> Vec<Include> {
        let (kept, dropped) = std::mem::take(&mut self.revincludes)
            .into_iter()
            .partition(|include| keep(include));
        self.revincludes = kept;
        dropped
    }
}

/// Parses a search on `resource_type` from already percent-decoded query pairs.
///
/// Unknown parameters are ignored and reported in [`ParsedSearch::warnings`]; malformed
/// values, unknown or unsupported modifiers and invalid control parameters are errors
/// naming the parameter and the value.
///
/// # Errors
///
/// A [`SearchError`] for the first malformed parameter: an empty or unparsable value, an
/// unknown prefix, an unknown or unsupported modifier, a reference of the wrong type, an
/// invalid control parameter (`_count`, `_sort`, `_include`...), or an invalid
/// `resource_type`.
pub fn parse<K: AsRef<str>, V: AsRef<str>>(
    resource_type: &str,
    pairs: &[(K, V)],
) -> Result<ParsedSearch, SearchError> {
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    parse_at(resource_type, pairs, i64::try_from(now).unwrap_or(i64::MAX))
}

/// [`parse`] with an explicit "now" (microseconds since the epoch) for the `ap` prefix.
pub(crate) fn parse_at<K: AsRef<str>, V: AsRef<str>>(
    resource_type: &str,
    pairs: &[(K, V)],
    now: i64,
) -> Result<ParsedSearch, SearchError> {
    if !is_valid_type_name(resource_type) {
        return Err(SearchError::new(
            "resourceType",
            format!("`{resource_type}` is not a resource type name"),
        ));
    }
    let type_schema = schema(resource_type);
    let mut search = ParsedSearch {
        resource_type: resource_type.to_owned(),
        clauses: Vec::new(),
        count: None,
        sort: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        elements: None,
        summary: None,
        total: None,
        format: None,
        pretty: None,
        session_id: None,
        warnings: Vec::new(),
    };
    for (key, value) in pairs {
        let (key, value) = (key.as_ref(), value.as_ref());
        if key.is_empty() {
            if !value.is_empty() {
                search.warnings.push(SearchWarning::new(
                    key,
                    "a value without a parameter name was ignored",
                ));
            }
            continue;
        }
        if parse_control(&mut search, type_schema, key, value)? {
            continue;
        }
        let (name, modifier) = match key.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (key, None),
        };
        // A chain may follow a type modifier (`subject:Patient.name`), and no modifier
        // contains a dot, so the whole key is checked.
        if key.contains('.') {
            search.warnings.push(SearchWarning::new(
                key,
                "chained parameters are not supported; the parameter was ignored",
            ));
            continue;
        }
        let Some((position, param)) = type_schema.param(name) else {
            let message = if name.starts_with('_') {
                format!("the control parameter `{name}` is not supported; it was ignored")
            } else {
                format!("`{name}` is not a search parameter of {resource_type}; it was ignored")
            };
            search.warnings.push(SearchWarning::new(key, message));
            continue;
        };
        let target = target_of(type_schema, position, param, key)?;
        let test = parse_test(param, key, modifier, value, now)?;
        search.clauses.push(Clause {
            param,
            target,
            test,
        });
    }
    Ok(search)
}

/// What the parameter at `position` of the schema compares against.
fn target_of(
    type_schema: &TypeSchema,
    position: usize,
    param: &ParamDef,
    key: &str,
) -> Result<Target, SearchError> {
    match (param.name(), type_schema.slot_of(position)) {
        ("_id", _) => Ok(Target::Id),
        ("_lastUpdated", _) => Ok(Target::LastUpdated),
        (_, Some(slot)) => Ok(Target::Slot(slot)),
        // Every registered parameter other than the two above has paths, hence a slot.
        (name, None) => Err(SearchError::new(
            key,
            format!("`{name}` has no index in this server"),
        )),
    }
}

/// Handles the control parameters; returns `false` for anything else.
fn parse_control(
    search: &mut ParsedSearch,
    type_schema: &TypeSchema,
    key: &str,
    value: &str,
) -> Result<bool, SearchError> {
    match key {
        "_count" => {
            let count = value
                .parse::<usize>()
                .ok()
                .filter(|count| *count > 0)
                .ok_or_else(|| {
                    SearchError::new(key, format!("`{value}` is not a positive integer"))
                })?;
            set_once(&mut search.count, count, key)?;
        }
        "_sort" => {
            if !search.sort.is_empty() {
                return Err(SearchError::new(key, "is given more than once"));
            }
            search.sort = parse_sort(type_schema, &search.resource_type, value)?;
        }
        "_include" | "_include:iterate" | "_include:recurse" => {
            let iterate = key != "_include";
            let include = parse_include(key, value, iterate, &search.resource_type, false)?;
            if include.iterate || include.source_type == search.resource_type {
                search.includes.push(include);
            } else {
                search.warnings.push(SearchWarning::new(
                    key,
                    format!(
                        "`{value}` follows references of {}, not {}; it was ignored",
                        include.source_type, search.resource_type
                    ),
                ));
            }
        }
        "_revinclude" | "_revinclude:iterate" | "_revinclude:recurse" => {
            let iterate = key != "_revinclude";
            let include = parse_include(key, value, iterate, &search.resource_type, true)?;
            search.revincludes.push(include);
        }
        "_elements" => {
            let mut names = Vec::new();
            for name in value.split(',').map(str::trim) {
                if name.is_empty() {
                    return Err(SearchError::new(
                        key,
                        format!("`{value}` has an empty element name"),
                    ));
                }
                names.push(name.to_owned());
            }
            search.elements.get_or_insert_with(Vec::new).extend(names);
        }
        "_summary" => {
            let summary = match value {
                "true" => Summary::True,
                "text" => Summary::Text,
                "data" => Summary::Data,
                "count" => Summary::Count,
                "false" => Summary::False,
                _ => {
                    return Err(SearchError::new(
                        key,
                        format!("`{value}` is not one of true, text, data, count, false"),
                    ));
                }
            };
            set_once(&mut search.summary, summary, key)?;
        }
        "_total" => {
            let total = match value {
                "none" => TotalMode::None,
                "estimate" => TotalMode::Estimate,
                "accurate" => TotalMode::Accurate,
                _ => {
                    return Err(SearchError::new(
                        key,
                        format!("`{value}` is not one of none, estimate, accurate"),
                    ));
                }
            };
            set_once(&mut search.total, total, key)?;
        }
        "_format" => {
            if value.is_empty() {
                return Err(SearchError::new(key, "has an empty value"));
            }
            set_once(&mut search.format, value.to_owned(), key)?;
        }
        "_pretty" => {
            let pretty = parse_bool(key, value)?;
            set_once(&mut search.pretty, pretty, key)?;
        }
        "sessionID" => {
            if value.is_empty() {
                return Err(SearchError::new(key, "has an empty value"));
            }
            set_once(&mut search.session_id, value.to_owned(), key)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), SearchError> {
    if slot.is_some() {
        return Err(SearchError::new(key, "is given more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_bool(key: &str, value: &str) -> Result<bool, SearchError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(SearchError::new(
            key,
            format!("`{value}` is not `true` or `false`"),
        )),
    }
}

fn parse_sort(
    type_schema: &TypeSchema,
    resource_type: &str,
    value: &str,
) -> Result<Vec<SortKey>, SearchError> {
    let mut keys: Vec<SortKey> = Vec::new();
    for raw in value.split(',').map(str::trim) {
        let (name, descending) = match raw.strip_prefix('-') {
            Some(name) => (name, true),
            None => (raw, false),
        };
        if name.is_empty() {
            return Err(SearchError::new(
                "_sort",
                format!("`{value}` has an empty sort key"),
            ));
        }
        let Some((position, param)) = type_schema.param(name) else {
            return Err(SearchError::new(
                "_sort",
                format!(
                    "`{name}` is not a search parameter of {resource_type}, so it cannot be sorted on"
                ),
            ));
        };
        if keys.iter().any(|key| key.param.name() == name) {
            return Err(SearchError::new(
                "_sort",
                format!("`{name}` appears more than once"),
            ));
        }
        let target = target_of(type_schema, position, param, "_sort")?;
        keys.push(SortKey {
            param,
            target,
            descending,
        });
    }
    Ok(keys)
}

/// Parses `Source:param[:Target]` or `*`. For a revinclude the target restriction, when
/// given, must be the searched type (otherwise nothing could ever be found).
fn parse_include(
    key: &str,
    value: &str,
    iterate: bool,
    searched_type: &str,
    reverse: bool,
) -> Result<Include, SearchError> {
    let invalid = |why: String| SearchError::new(key, format!("`{value}` {why}"));
    let parts: Vec<&str> = value.split(':').collect();
    let (source_type, param_name, target_type) = match parts.as_slice() {
        ["*"] if !reverse => (searched_type, "*", None),
        [source, param] => (*source, *param, None),
        [source, param, target] => (*source, *param, Some(*target)),
        _ => {
            return Err(invalid(
                "must have the form SourceType:parameter or SourceType:parameter:TargetType"
                    .to_owned(),
            ));
        }
    };
    if !is_valid_type_name(source_type) {
        return Err(invalid(format!(
            "names `{source_type}`, which is not a resource type"
        )));
    }
    if let Some(target) = target_type
        && !is_valid_type_name(target)
    {
        return Err(invalid(format!(
            "names `{target}`, which is not a resource type"
        )));
    }
    let source_schema = schema(source_type);
    let (param, slots) = if param_name == "*" {
        let slots = source_schema
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.kind == ParamKind::Reference)
            .filter_map(|(index, _)| u8::try_from(index).ok().map(|slot| (slot, None)))
            .collect();
        (None, slots)
    } else {
        let Some((position, param)) = source_schema.param(param_name) else {
            return Err(invalid(format!(
                "names `{param_name}`, which is not a search parameter of {source_type}"
            )));
        };
        let Some(slot) = source_schema
            .slot_of(position)
            .filter(|_| param.kind() == ParamKind::Reference)
        else {
            return Err(invalid(format!(
                "names `{param_name}`, which is not a reference parameter of {source_type}"
            )));
        };
        if let (Some(restricted), Some(target)) = (param.target(), target_type)
            && restricted != target
        {
            return Err(invalid(format!(
                "asks for {target}, but `{param_name}` only refers to {restricted}"
            )));
        }
        (Some(param), vec![(slot, param.target())])
    };
    if reverse
        && let Some(target) = target_type
        && target != searched_type
        && !iterate
    {
        return Err(invalid(format!(
            "targets {target}, but the search is on {searched_type}"
        )));
    }
    Ok(Include {
        source_type: source_type.to_owned(),
        param,
        target_type: target_type.map(str::to_owned),
        iterate,
        slots,
    })
}

/// Parses the value(s) of one search parameter into its test.
fn parse_test(
    param: &'static ParamDef,
    key: &str,
    modifier: Option<&str>,
    value: &str,
    now: i64,
) -> Result<Test, SearchError> {
    if modifier == Some("missing") {
        return parse_bool(key, value).map(Test::Missing);
    }
    if value.is_empty() {
        return Err(SearchError::new(key, "has an empty value"));
    }
    let raw_values = split_unescaped(value, ',');
    if raw_values.iter().any(|raw| raw.is_empty()) {
        return Err(SearchError::new(
            key,
            format!("`{value}` has an empty value between commas"),
        ));
    }
    let unsupported = |accepted: &str| {
        SearchError::new(
            key,
            format!(
                "the modifier `:{}` is not supported here ({} parameters accept {accepted})",
                modifier.unwrap_or_default(),
                param.kind().as_str()
            ),
        )
    };
    let invalid = |raw: &str, why: String| SearchError::new(key, format!("`{raw}` {why}"));

    if param.name() == "_id" {
        let negate = match modifier {
            None => false,
            Some("not") => true,
            Some(_) => return Err(unsupported(":not, :missing")),
        };
        let ids = raw_values.into_iter().map(unescape).collect();
        return Ok(Test::Id { ids, negate });
    }

    match param.kind() {
        ParamKind::Date => {
            if modifier.is_some() {
                return Err(unsupported(":missing"));
            }
            let mut predicates = Vec::with_capacity(raw_values.len());
            for raw in raw_values {
                let text = unescape(raw);
                let (prefix, date) = split_prefix(&text).map_err(|why| invalid(&text, why))?;
                let range = parse_date(date, true)
                    .map_err(|why| invalid(&text, format!("is not a valid date: {why}")))?;
                predicates.push(DatePredicate::new(prefix, range, now));
            }
            Ok(Test::Date(predicates))
        }
        ParamKind::Token => match modifier {
            None | Some("not") => {
                let mut values = Vec::with_capacity(raw_values.len());
                for raw in raw_values {
                    values.push(parse_token(raw).map_err(|why| invalid(raw, why))?);
                }
                Ok(Test::Token {
                    values,
                    negate: modifier.is_some(),
                })
            }
            Some("text") => Ok(Test::TokenText(
                raw_values
                    .into_iter()
                    .map(|raw| normalize(&unescape(raw)))
                    .collect(),
            )),
            Some(_) => Err(unsupported(":not, :text, :missing")),
        },
        ParamKind::Reference => {
            let type_modifier = match modifier {
                None => None,
                Some(name) if is_valid_type_name(name) => Some(name),
                Some(_) => return Err(unsupported(":[type] (e.g. :Patient), :missing")),
            };
            if let (Some(restricted), Some(named)) = (param.target(), type_modifier)
                && restricted != named
            {
                return Err(SearchError::new(
                    key,
                    format!("`{}` only refers to {restricted} resources", param.name()),
                ));
            }
            let mut values = Vec::with_capacity(raw_values.len());
            for raw in raw_values {
                let text = unescape(raw);
                let Some((written_type, id)) = split_reference(&text) else {
                    return Err(invalid(
                        &text,
                        "is not a reference to a stored resource".to_owned(),
                    ));
                };
                let implied = type_modifier.or(param.target());
                if let (Some(written), Some(implied)) = (written_type, implied)
                    && written != implied
                {
                    return Err(invalid(
                        &text,
                        format!("refers to a {written}, but this parameter means {implied}"),
                    ));
                }
                values.push(RefQuery {
                    resource_type: written_type.or(implied).map(str::to_owned),
                    id: id.to_owned(),
                });
            }
            Ok(Test::Reference(values))
        }
        ParamKind::String => {
            let mode = match modifier {
                None => StringMode::StartsWith,
                Some("contains") => StringMode::Contains,
                Some("exact") => StringMode::Exact,
                Some(_) => return Err(unsupported(":exact, :contains, :missing")),
            };
            let values = raw_values
                .into_iter()
                .map(|raw| {
                    let text = unescape(raw);
                    if mode == StringMode::Exact {
                        text
                    } else {
                        normalize(&text)
                    }
                })
                .collect();
            Ok(Test::String { mode, values })
        }
        ParamKind::Quantity => {
            if modifier.is_some() {
                return Err(unsupported(":missing"));
            }
            let mut values = Vec::with_capacity(raw_values.len());
            for raw in raw_values {
                values.push(parse_quantity(raw).map_err(|why| invalid(raw, why))?);
            }
            Ok(Test::Quantity(values))
        }
    }
}

/// Parses `code`, `system|code`, `|code` or `system|` (raw, escapes still in place).
fn parse_token(raw: &str) -> Result<TokenQuery, String> {
    match split_first_unescaped(raw, '|') {
        None => Ok(TokenQuery {
            system: SystemQuery::Any,
            code: Some(unescape(raw)),
        }),
        Some(("", "")) => Err("has neither a system nor a code".to_owned()),
        Some((system, code)) => Ok(TokenQuery {
            system: if system.is_empty() {
                SystemQuery::NoSystem
            } else {
                SystemQuery::Exact(unescape(system))
            },
            code: (!code.is_empty()).then(|| unescape(code)),
        }),
    }
}

/// Parses `[prefix]number`, `[prefix]number|system|code` or `[prefix]number||code`.
fn parse_quantity(raw: &str) -> Result<QuantityQuery, String> {
    let parts = split_unescaped(raw, '|');
    let (number, system, code) = match parts.as_slice() {
        [number] => (*number, None, None),
        [number, system, code] => (
            *number,
            (!system.is_empty()).then(|| unescape(system)),
            (!code.is_empty()).then(|| unescape(code)),
        ),
        _ => return Err("must be a number, optionally followed by |system|code".to_owned()),
    };
    let (prefix, number) = split_prefix(number)?;
    let (value, half_step) = parse_decimal(number)?;
    Ok(QuantityQuery {
        prefix,
        value,
        low: value - half_step,
        high: value + half_step,
        system,
        code,
    })
}

/// Parses a FHIR decimal (optionally with an exponent), returning its value and half of the
/// last written digit's unit, which is the half-width of its implicit precision range.
fn parse_decimal(text: &str) -> Result<(f64, f64), String> {
    let invalid = || "is not a number".to_owned();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(position) => (&text[..position], Some(&text[position + 1..])),
        None => (text, None),
    };
    let digits = mantissa.strip_prefix('-').unwrap_or(mantissa);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || digits.ends_with('.') {
        return Err(invalid());
    }
    let exponent: i32 = match exponent {
        None => 0,
        Some(exponent) => {
            let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if unsigned.is_empty() || !all_digits(unsigned) {
                return Err(invalid());
            }
            exponent.parse().map_err(|_| invalid())?
        }
    };
    let value: f64 = text.parse().map_err(|_| invalid())?;
    if !value.is_finite() {
        return Err(invalid());
    }
    let decimals = i32::try_from(fraction.len()).map_err(|_| invalid())?;
    // Saturating: an exponent near `i32::MIN` written with a fraction must not overflow.
    let half_step = 0.5 * 10_f64.powi(exponent.saturating_sub(decimals));
    Ok((value, half_step))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(resource_type: &str, pairs: &[(&str, &str)]) -> ParsedSearch {
        parse(resource_type, pairs).unwrap_or_else(|error| panic!("{pairs:?}: {error}"))
    }

    fn parse_err(resource_type: &str, pairs: &[(&str, &str)]) -> SearchError {
        match parse(resource_type, pairs) {
            Ok(search) => panic!("{pairs:?} parsed: {search:?}"),
            Err(error) => error,
        }
    }

    fn only_test(search: &ParsedSearch) -> &Test {
        assert_eq!(search.clauses.len(), 1, "{search:?}");
        &search.clauses[0].test
    }

    #[test]
    fn token_forms() {
        let search = parse_ok(
            "Observation",
            &[(
                "code",
                r"8302-2,http://loinc.org|8310-5,|local,http://loinc.org|,a\|b|c\,d",
            )],
        );
        let expected = vec![
            TokenQuery {
                system: SystemQuery::Any,
                code: Some("8302-2".into()),
            },
            TokenQuery {
                system: SystemQuery::Exact("http://loinc.org".into()),
                code: Some("8310-5".into()),
            },
            TokenQuery {
                system: SystemQuery::NoSystem,
                code: Some("local".into()),
            },
            TokenQuery {
                system: SystemQuery::Exact("http://loinc.org".into()),
                code: None,
            },
            TokenQuery {
                system: SystemQuery::Exact("a|b".into()),
                code: Some("c,d".into()),
            },
        ];
        assert_eq!(
            only_test(&search),
            &Test::Token {
                values: expected,
                negate: false
            }
        );
        let error = parse_err("Observation", &[("code", "|")]);
        assert_eq!(error.param(), "code");
        assert!(
            error.message().contains("neither a system nor a code"),
            "{error}"
        );
    }

    #[test]
    fn reference_forms_all_name_the_same_target() {
        let expected = Test::Reference(vec![RefQuery {
            resource_type: Some("Patient".into()),
            id: "123".into(),
        }]);
        for (key, value) in [
            ("patient", "123"),
            ("patient", "Patient/123"),
            ("subject", "Patient/123"),
            ("subject:Patient", "123"),
            (
                "subject",
                "https://any-host/interconnect-fhir-oauth/api/FHIR/R4/Patient/123",
            ),
            (
                "patient",
                "http://127.0.0.1:8080/fhir/Patient/123/_history/2",
            ),
        ] {
            assert_eq!(
                only_test(&parse_ok("Observation", &[(key, value)])),
                &expected,
                "{key}={value}"
            );
        }
        // A bare id on a parameter that may point at any type keeps the type open.
        assert_eq!(
            only_test(&parse_ok("Observation", &[("subject", "123")])),
            &Test::Reference(vec![RefQuery {
                resource_type: None,
                id: "123".into()
            }])
        );
    }

    #[test]
    fn reference_type_conflicts_are_errors() {
        let error = parse_err("Observation", &[("patient", "Group/1")]);
        assert_eq!(error.param(), "patient");
        assert!(error.message().contains("Group/1"), "{error}");
        let error = parse_err("Observation", &[("patient:Group", "1")]);
        assert!(
            error.message().contains("only refers to Patient"),
            "{error}"
        );
        let error = parse_err("Observation", &[("subject:Patient", "Group/1")]);
        assert!(error.message().contains("refers to a Group"), "{error}");
        let error = parse_err("Observation", &[("subject", "#contained")]);
        assert_eq!(error.param(), "subject");
    }

    #[test]
    fn string_modes() {
        assert_eq!(
            only_test(&parse_ok("Patient", &[("family", "Véliz,O'Brien")])),
            &Test::String {
                mode: StringMode::StartsWith,
                values: vec!["veliz".into(), "o'brien".into()]
            }
        );
        assert_eq!(
            only_test(&parse_ok("Patient", &[("name:exact", "Véliz")])),
            &Test::String {
                mode: StringMode::Exact,
                values: vec!["Véliz".into()]
            }
        );
        assert_eq!(
            only_test(&parse_ok("Patient", &[("name:contains", r"LIZ\,X")])),
            &Test::String {
                mode: StringMode::Contains,
                values: vec!["liz,x".into()]
            }
        );
    }

    #[test]
    fn dates_with_prefixes() {
        let search = parse_ok(
            "Observation",
            &[
                ("date", "ge2024-01-01,lt2023"),
                ("date", "le2024-12-31T23:59:59+01:00"),
            ],
        );
        assert_eq!(
            search.clauses.len(),
            2,
            "a repeated parameter is two AND-ed clauses"
        );
        let Test::Date(first) = &search.clauses[0].test else {
            panic!("date test")
        };
        assert_eq!(first.len(), 2, "a comma is an OR within one clause");
        assert_eq!(first[0].prefix, Prefix::Ge);
        assert_eq!(first[1].prefix, Prefix::Lt);
    }

    #[test]
    fn malformed_values_name_the_parameter_and_value() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "Observation",
                "date",
                "2024-13-01",
                "`2024-13-01` is not a valid date: month 13",
            ),
            ("Observation", "date", "xx2024", "unknown prefix `xx`"),
            ("Observation", "date", "", "empty value"),
            ("Observation", "code", "a,,b", "empty value between commas"),
            (
                "Observation",
                "value-quantity",
                "five",
                "`five` unknown prefix `fi`",
            ),
            (
                "Observation",
                "value-quantity",
                "5x",
                "`5x` is not a number",
            ),
            (
                "Observation",
                "value-quantity",
                "5|mg",
                "optionally followed by |system|code",
            ),
            (
                "Observation",
                "_count",
                "0",
                "`0` is not a positive integer",
            ),
            (
                "Observation",
                "_count",
                "ten",
                "`ten` is not a positive integer",
            ),
            (
                "Observation",
                "code:missing",
                "maybe",
                "`maybe` is not `true` or `false`",
            ),
            ("Observation", "_summary", "all", "`all` is not one of"),
            ("Observation", "_total", "exact", "`exact` is not one of"),
            (
                "Observation",
                "_sort",
                "color",
                "`color` is not a search parameter of Observation",
            ),
            ("Observation", "_sort", "date,", "empty sort key"),
            (
                "Observation",
                "_include",
                "Observation",
                "must have the form",
            ),
            (
                "Observation",
                "_include",
                "Observation:code",
                "not a reference parameter",
            ),
            (
                "Observation",
                "_include",
                "Observation:nope",
                "not a search parameter of Observation",
            ),
            (
                "Patient",
                "_revinclude",
                "Provenance:target:Observation",
                "targets Observation",
            ),
        ];
        for (resource_type, key, value, expected) in cases {
            let error = parse_err(resource_type, &[(key, value)]);
            assert_eq!(error.param(), *key, "{key}={value}");
            assert!(error.message().contains(expected), "{key}={value}: {error}");
            assert_eq!(error.epic_code(), None);
        }
    }

    #[test]
    fn unknown_and_unsupported_modifiers_are_errors() {
        for (key, value) in [
            ("code:exact", "x"),
            ("code:below", "x"),
            ("date:exact", "2024"),
            ("family:text", "x"),
            ("value-quantity:not", "5"),
            ("patient:identifier", "x"),
            ("_id:exact", "x"),
        ] {
            let resource_type = if key == "family:text" {
                "Patient"
            } else {
                "Observation"
            };
            let error = parse_err(resource_type, &[(key, value)]);
            assert_eq!(error.param(), key);
            assert!(
                error.message().contains("is not supported"),
                "{key}: {error}"
            );
        }
    }

    #[test]
    fn unknown_parameters_become_warnings() {
        let search = parse_ok(
            "Observation",
            &[
                ("code", "x"),
                ("colour", "red"),
                ("_has:Group:member:_id", "1"),
                ("subject.name", "x"),
                ("subject:Patient.name", "x"),
                ("_tag", "t"),
            ],
        );
        assert_eq!(search.clauses.len(), 1);
        let ignored: Vec<&str> = search.warnings().iter().map(SearchWarning::param).collect();
        assert_eq!(
            ignored,
            [
                "colour",
                "_has:Group:member:_id",
                "subject.name",
                "subject:Patient.name",
                "_tag"
            ]
        );
        assert!(
            search.warnings()[0]
                .message()
                .contains("not a search parameter of Observation")
        );
    }

    #[test]
    fn control_parameters_are_exposed() {
        let search = parse_ok(
            "Observation",
            &[
                ("_count", "50"),
                ("_sort", "-date,code"),
                ("_include", "Observation:patient"),
                ("_include:iterate", "Patient:general-practitioner"),
                ("_revinclude", "Provenance:target"),
                ("_elements", "code,valueQuantity"),
                ("_elements", "status"),
                ("_summary", "data"),
                ("_total", "accurate"),
                ("_format", "json"),
                ("_pretty", "true"),
                ("sessionID", "abc"),
            ],
        );
        assert!(search.warnings().is_empty(), "{:?}", search.warnings());
        assert_eq!(search.count(), Some(50));
        let sort: Vec<(&str, bool)> = search
            .sort()
            .iter()
            .map(|key| (key.name(), key.descending()))
            .collect();
        assert_eq!(sort, [("date", true), ("code", false)]);
        assert_eq!(search.includes().len(), 2);
        assert_eq!(search.includes()[0].param(), "patient");
        assert!(search.includes()[1].iterate());
        assert_eq!(search.revincludes()[0].source_type(), "Provenance");
        assert_eq!(
            search.elements(),
            Some(
                &[
                    "code".to_owned(),
                    "valueQuantity".to_owned(),
                    "status".to_owned()
                ][..]
            )
        );
        assert_eq!(search.summary(), Some(Summary::Data));
        assert_eq!(search.total(), Some(TotalMode::Accurate));
        assert_eq!(search.format(), Some("json"));
        assert_eq!(search.pretty(), Some(true));
        assert_eq!(search.session_id(), Some("abc"));
    }

    #[test]
    fn repeated_single_valued_controls_are_errors() {
        for key in ["_count", "_sort", "_summary", "_total"] {
            let value = match key {
                "_count" => "5",
                "_sort" => "date",
                "_summary" => "true",
                _ => "none",
            };
            let error = parse_err("Observation", &[(key, value), (key, value)]);
            assert!(error.message().contains("more than once"), "{key}: {error}");
        }
    }

    #[test]
    fn include_of_another_type_is_ignored_with_a_warning() {
        let search = parse_ok("Observation", &[("_include", "Encounter:patient")]);
        assert!(search.includes().is_empty());
        assert_eq!(search.warnings()[0].param(), "_include");
        let wildcard = parse_ok("Observation", &[("_include", "*")]);
        assert_eq!(wildcard.includes()[0].param(), "*");
        assert!(wildcard.includes()[0].slots.len() >= 4);
    }

    #[test]
    fn types_outside_the_registry_support_id_and_last_updated() {
        let search = parse_ok(
            "Basic",
            &[("_id", "a,b"), ("_lastUpdated", "ge2024"), ("code", "x")],
        );
        assert_eq!(search.clauses.len(), 2);
        assert_eq!(search.warnings().len(), 1);
        let error = parse_err("not a type", &[("_id", "a")]);
        assert_eq!(error.param(), "resourceType");
    }

    #[test]
    fn quantity_values_and_precision() {
        let search = parse_ok(
            "Observation",
            &[(
                "value-quantity",
                "ge5.4|http://unitsofmeasure.org|mg,100||kg,1.5e2",
            )],
        );
        let Test::Quantity(values) = only_test(&search) else {
            panic!("quantity test");
        };
        assert_eq!(values[0].prefix, Prefix::Ge);
        assert!((values[0].low - 5.35).abs() < 1e-9 && (values[0].high - 5.45).abs() < 1e-9);
        assert_eq!(
            values[0].system.as_deref(),
            Some("http://unitsofmeasure.org")
        );
        assert_eq!(values[1].system, None);
        assert_eq!(values[1].code.as_deref(), Some("kg"));
        assert!((values[1].low - 99.5).abs() < 1e-9);
        assert!((values[2].value - 150.0).abs() < 1e-9 && (values[2].high - 155.0).abs() < 1e-9);
        for bad in ["1.", ".5", "1e", "--1", "1.2.3", "1e+"] {
            assert!(parse_decimal(bad).is_err(), "{bad}");
        }
        // Extreme exponents are values, not panics: the smallest one underflows to zero with
        // a zero-width precision range.
        assert_eq!(parse_decimal("1.5e-2147483648"), Ok((0.0, 0.0)));
        assert!(parse_decimal("1.5e99999999999").is_err());
    }
}
