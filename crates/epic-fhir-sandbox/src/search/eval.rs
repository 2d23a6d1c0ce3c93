//! Evaluating a [`ParsedSearch`] against the store: candidate selection through the id and
//! patient indexes, clause matching on precomputed index entries, and sorting.

use std::cmp::Ordering;
use std::sync::Arc;

use super::date::{DateRange, Prefix};
use super::parse::{
    Clause, ParsedSearch, QuantityQuery, RefQuery, SortKey, StringMode, SystemQuery, Target, Test,
    TokenQuery,
};
use super::registry::{ParamDef, ParamKind};
use super::text::word_prefix_match;
use crate::store::{IndexValue, Inner, Interner, Store, StoredResource, Sym, TypeTable};

/// Width of a `meta.lastUpdated` value's range: the store writes whole milliseconds.
const LAST_UPDATED_PRECISION_MICROS: i64 = 1000;

impl Store {
    /// Runs a search and returns every match, deduplicated and in order: by the `_sort` keys
    /// when given (ties broken by id ascending, so the order is total and stable across
    /// pages), otherwise in creation order (the order in which resources were first stored).
    ///
    /// The result is a snapshot: later writes create new versions and never change it.
    pub fn search(&self, search: &ParsedSearch) -> Vec<Arc<StoredResource>> {
        let inner = self.read_inner();
        let Some(table) = inner.tables.get(search.resource_type()) else {
            return Vec::new();
        };
        let clauses = compile_all(search, &inner);
        let matching =
            |resource: &&Arc<StoredResource>| matches_all(&clauses, resource, &inner.interner);
        let mut matches: Vec<&Arc<StoredResource>> = match candidates(table, &clauses, &inner) {
            Some(positions) => positions
                .into_iter()
                .filter_map(|position| table.current(position))
                .filter(matching)
                .collect(),
            None => table
                .iter()
                .map(|(_, resource)| resource)
                .filter(matching)
                .collect(),
        };
        if !search.sort().is_empty() {
            sort_matches(&mut matches, search.sort(), &inner.interner);
        }
        matches.into_iter().map(Arc::clone).collect()
    }

    /// The `candidates` that match every clause of `search`, in their order: the search run
    /// over a given list (a bulk export's snapshot) instead of the store's current resources.
    /// Candidates of another type never match; sorting, paging and includes do not apply.
    pub fn matching(
        &self,
        search: &ParsedSearch,
        candidates: &[Arc<StoredResource>],
    ) -> Vec<Arc<StoredResource>> {
        let inner = self.read_inner();
        let clauses = compile_all(search, &inner);
        candidates
            .iter()
            .filter(|resource| {
                resource.resource_type() == search.resource_type()
                    && matches_all(&clauses, resource, &inner.interner)
            })
            .cloned()
            .collect()
    }
}

/// The clauses of `search`, with their strings resolved to this store's symbols.
fn compile_all<'q>(search: &'q ParsedSearch, inner: &Inner) -> Vec<Compiled<'q>> {
    search
        .clauses
        .iter()
        .map(|clause| compile(clause, inner))
        .collect()
}

/// True when `resource` satisfies every clause (the clauses are AND-ed).
fn matches_all(clauses: &[Compiled<'_>], resource: &StoredResource, interner: &Interner) -> bool {
    clauses
        .iter()
        .all(|clause| clause.matches(resource, interner))
}

/// Which references count for a parameter restricted to one resource type (`patient`
/// counts only references to Patients, even where the element may point elsewhere).
#[derive(Clone, Copy)]
pub(super) enum TypeFilter {
    /// The parameter is not restricted.
    Any,
    /// Only references to the type with this symbol count.
    Only(Sym),
    /// The type was never interned, so no stored reference can count.
    Nothing,
}

impl TypeFilter {
    /// The filter for a parameter's target restriction.
    pub(super) fn new(restricted_to: Option<&str>, interner: &Interner) -> Self {
        match restricted_to {
            None => TypeFilter::Any,
            Some(name) => interner
                .get(name)
                .map_or(TypeFilter::Nothing, TypeFilter::Only),
        }
    }

    /// True when a reference to `resource_type` counts.
    pub(super) fn accepts(self, resource_type: Sym) -> bool {
        match self {
            TypeFilter::Any => true,
            TypeFilter::Only(expected) => expected == resource_type,
            TypeFilter::Nothing => false,
        }
    }
}

/// The type filter of a parameter: its target restriction if it is a reference parameter.
fn type_filter_of(param: &ParamDef, interner: &Interner) -> TypeFilter {
    if param.kind() == ParamKind::Reference {
        TypeFilter::new(param.target(), interner)
    } else {
        TypeFilter::Any
    }
}

/// A clause with its strings resolved to interned symbols for this store.
struct Compiled<'q> {
    clause: &'q Clause,
    /// Which references count for the clause's parameter.
    type_filter: TypeFilter,
    test: CompiledTest<'q>,
}

enum CompiledTest<'q> {
    /// Used as-is: dates, `_id`, `:missing`, strings and token text need no symbols.
    Plain(&'q Test),
    /// Token values; `None` entries can never match (a string the store never saw).
    Token {
        values: Vec<Option<CompiledToken>>,
        negate: bool,
    },
    /// Reference values as `(type, id)` symbols; `None` entries can never match.
    Reference(Vec<Option<(Option<Sym>, Sym)>>),
    /// Quantity values with their unit symbols.
    Quantity(Vec<(&'q QuantityQuery, Option<UnitMatch>)>),
}

#[derive(Clone, Copy)]
enum SystemMatch {
    Any,
    NoSystem,
    Exact(Sym),
}

#[derive(Clone, Copy)]
struct CompiledToken {
    system: SystemMatch,
    code: Option<Sym>,
}

/// How a quantity query's unit is compared.
#[derive(Clone, Copy)]
enum UnitMatch {
    /// No unit in the query.
    Any,
    /// `number|system|code`: the system and the code must both match.
    SystemCode(Sym, Sym),
    /// `number|system|`: only the system.
    System(Sym),
    /// `number||code`: the code or the human-readable unit.
    CodeOrUnit(Sym),
}

fn compile<'q>(clause: &'q Clause, inner: &Inner) -> Compiled<'q> {
    let interner = &inner.interner;
    let type_filter = type_filter_of(clause.param, interner);
    let test = match &clause.test {
        Test::Token { values, negate } => CompiledTest::Token {
            values: values
                .iter()
                .map(|value| compile_token(value, interner))
                .collect(),
            negate: *negate,
        },
        Test::Reference(values) => CompiledTest::Reference(
            values
                .iter()
                .map(|value| compile_reference(value, interner))
                .collect(),
        ),
        Test::Quantity(values) => CompiledTest::Quantity(
            values
                .iter()
                .map(|value| (value, compile_unit(value, interner)))
                .collect(),
        ),
        other => CompiledTest::Plain(other),
    };
    Compiled {
        clause,
        type_filter,
        test,
    }
}

fn compile_token(query: &TokenQuery, interner: &Interner) -> Option<CompiledToken> {
    let system = match &query.system {
        SystemQuery::Any => SystemMatch::Any,
        SystemQuery::NoSystem => SystemMatch::NoSystem,
        SystemQuery::Exact(system) => SystemMatch::Exact(interner.get(system)?),
    };
    let code = match &query.code {
        Some(code) => Some(interner.get(code)?),
        None => None,
    };
    Some(CompiledToken { system, code })
}

fn compile_reference(query: &RefQuery, interner: &Interner) -> Option<(Option<Sym>, Sym)> {
    let resource_type = match &query.resource_type {
        Some(name) => Some(interner.get(name)?),
        None => None,
    };
    Some((resource_type, interner.get(&query.id)?))
}

fn compile_unit(query: &QuantityQuery, interner: &Interner) -> Option<UnitMatch> {
    match (&query.system, &query.code) {
        (None, None) => Some(UnitMatch::Any),
        (Some(system), Some(code)) => Some(UnitMatch::SystemCode(
            interner.get(system)?,
            interner.get(code)?,
        )),
        (Some(system), None) => Some(UnitMatch::System(interner.get(system)?)),
        (None, Some(code)) => Some(UnitMatch::CodeOrUnit(interner.get(code)?)),
    }
}

/// Narrows the search to a candidate list through the id lookup or the patient index, when
/// a clause allows it; `None` means every resource of the type must be checked. Candidates
/// are positions in ascending (creation) order; every clause is still checked on them.
fn candidates(table: &TypeTable, clauses: &[Compiled<'_>], inner: &Inner) -> Option<Vec<u32>> {
    let mut best: Option<Vec<u32>> = None;
    for clause in clauses {
        let found = match (&clause.clause.target, &clause.test) {
            (Target::Id, CompiledTest::Plain(Test::Id { ids, negate: false })) => {
                let mut positions: Vec<u32> =
                    ids.iter().filter_map(|id| table.position(id)).collect();
                positions.sort_unstable();
                positions.dedup();
                Some(positions)
            }
            (Target::Slot(slot), CompiledTest::Reference(values))
                if Some(*slot) == table.schema.patient_slot
                    && values.iter().all(|value| match value {
                        Some((Some(resource_type), _)) => *resource_type == inner.patient_type,
                        // A value that can never match adds no candidates.
                        None => true,
                        Some((None, _)) => false,
                    }) =>
            {
                let mut positions: Vec<u32> = values
                    .iter()
                    .flatten()
                    .flat_map(|(_, id)| table.patient_positions(*id).iter().copied())
                    .collect();
                positions.sort_unstable();
                positions.dedup();
                Some(positions)
            }
            _ => None,
        };
        if let Some(found) = found
            && best.as_ref().is_none_or(|best| found.len() < best.len())
        {
            best = Some(found);
        }
    }
    best
}

impl Compiled<'_> {
    fn matches(&self, resource: &StoredResource, interner: &Interner) -> bool {
        match self.clause.target {
            Target::Id => match self.test {
                CompiledTest::Plain(Test::Id { ids, negate }) => {
                    ids.iter().any(|id| id == resource.id()) != *negate
                }
                // Every resource has an id.
                CompiledTest::Plain(Test::Missing(missing)) => !missing,
                _ => false,
            },
            Target::LastUpdated => {
                let lo = resource.last_updated_micros();
                let value = DateRange {
                    lo,
                    hi: lo.saturating_add(LAST_UPDATED_PRECISION_MICROS),
                };
                match self.test {
                    CompiledTest::Plain(Test::Date(predicates)) => {
                        predicates.iter().any(|predicate| predicate.matches(value))
                    }
                    CompiledTest::Plain(Test::Missing(missing)) => !missing,
                    _ => false,
                }
            }
            Target::Slot(slot) => self.matches_values(resource.index.slot(slot), interner),
        }
    }

    /// True when a reference value counts for this parameter (its type filter).
    fn counts(&self, value: &IndexValue) -> bool {
        match value {
            IndexValue::Ref { resource_type, .. } => self.type_filter.accepts(*resource_type),
            _ => true,
        }
    }

    fn matches_values(&self, values: &[IndexValue], interner: &Interner) -> bool {
        match &self.test {
            CompiledTest::Plain(Test::Missing(missing)) => {
                let present = values.iter().any(|value| self.counts(value));
                present != *missing
            }
            CompiledTest::Plain(Test::Date(predicates)) => values.iter().any(|value| {
                matches!(value, IndexValue::Date(range)
                    if predicates.iter().any(|predicate| predicate.matches(*range)))
            }),
            CompiledTest::Plain(Test::TokenText(queries)) => values.iter().any(|value| {
                matches!(value, IndexValue::Text(text)
                    if queries.iter().any(|query| word_prefix_match(interner.resolve(*text), query)))
            }),
            CompiledTest::Plain(Test::String { mode, values: queries }) => {
                values.iter().any(|value| {
                    let IndexValue::Str { raw, normalized } = value else {
                        return false;
                    };
                    queries.iter().any(|query| match mode {
                        StringMode::StartsWith => {
                            interner.resolve(*normalized).starts_with(query.as_str())
                        }
                        StringMode::Contains => {
                            interner.resolve(*normalized).contains(query.as_str())
                        }
                        StringMode::Exact => interner.resolve(*raw) == query,
                    })
                })
            }
            CompiledTest::Token {
                values: queries,
                negate,
            } => {
                let hit = values.iter().any(|value| {
                    let IndexValue::Token { system, code } = value else {
                        return false;
                    };
                    queries
                        .iter()
                        .flatten()
                        .any(|query| token_matches(*query, *system, *code))
                });
                hit != *negate
            }
            CompiledTest::Reference(queries) => values.iter().any(|value| {
                let IndexValue::Ref { resource_type, id } = value else {
                    return false;
                };
                self.counts(value)
                    && queries.iter().flatten().any(|(query_type, query_id)| {
                        query_id == id && query_type.is_none_or(|query_type| query_type == *resource_type)
                    })
            }),
            CompiledTest::Quantity(queries) => values.iter().any(|value| {
                let IndexValue::Quantity(quantity) = value else {
                    return false;
                };
                queries.iter().any(|(query, unit)| {
                    let unit_matches = match unit {
                        None => false,
                        Some(UnitMatch::Any) => true,
                        Some(UnitMatch::SystemCode(system, code)) => {
                            quantity.system == *system && quantity.code == *code
                        }
                        Some(UnitMatch::System(system)) => quantity.system == *system,
                        Some(UnitMatch::CodeOrUnit(code)) => {
                            quantity.code == *code || quantity.unit == *code
                        }
                    };
                    unit_matches && quantity_matches(query, quantity.value)
                })
            }),
            // `_id` tests only ever target the id, and the remaining plain tests are
            // handled above.
            CompiledTest::Plain(Test::Id { .. } | Test::Token { .. } | Test::Reference(_) | Test::Quantity(_)) => false,
        }
    }
}

fn token_matches(query: CompiledToken, system: Sym, code: Sym) -> bool {
    let system_matches = match query.system {
        SystemMatch::Any => true,
        SystemMatch::NoSystem => system.is_none(),
        SystemMatch::Exact(expected) => system == expected,
    };
    system_matches && query.code.is_none_or(|expected| code == expected)
}

/// Quantity comparison. A resource value is a point; the search value stands for the range
/// its precision implies (`5.4` is [5.35, 5.45)) for `eq` and `ne`, and is compared exactly
/// for the ordering prefixes. `ap` accepts values within 10% of the search value (or within
/// its precision range, whichever is wider), as FHIR recommends.
fn quantity_matches(query: &QuantityQuery, value: f64) -> bool {
    let in_range = query.low <= value && value < query.high;
    match query.prefix {
        Prefix::Eq => in_range,
        Prefix::Ne => !in_range,
        Prefix::Gt | Prefix::Sa => value > query.value,
        Prefix::Lt | Prefix::Eb => value < query.value,
        Prefix::Ge => value >= query.value,
        Prefix::Le => value <= query.value,
        Prefix::Ap => in_range || (value - query.value).abs() <= query.value.abs() / 10.0,
    }
}

/// One resource's value for one sort key.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum SortValue<'a> {
    Int(i64),
    Float(f64),
    Text(&'a str),
}

impl SortValue<'_> {
    fn compare(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortValue::Int(a), SortValue::Int(b)) => a.cmp(b),
            (SortValue::Float(a), SortValue::Float(b)) => a.total_cmp(b),
            (SortValue::Text(a), SortValue::Text(b)) => a.cmp(b),
            // One key always yields one kind of value; fall back to a fixed order anyway.
            _ => self.partial_cmp(other).unwrap_or(Ordering::Equal),
        }
    }
}

/// The value a resource sorts by: for ascending keys the smallest of its values (the lower
/// bound for dates), for descending keys the largest (the upper bound for dates), as FHIR
/// suggests for multi-valued and range-valued elements.
fn sort_value<'a>(
    key: &SortKey,
    resource: &'a StoredResource,
    interner: &'a Interner,
) -> Option<SortValue<'a>> {
    let values = match key.target {
        Target::Id => return Some(SortValue::Text(resource.id())),
        Target::LastUpdated => return Some(SortValue::Int(resource.last_updated_micros())),
        Target::Slot(slot) => resource.index.slot(slot),
    };
    let type_filter = type_filter_of(key.param, interner);
    let candidates = values.iter().filter_map(|value| match value {
        IndexValue::Date(range) => Some(SortValue::Int(if key.descending {
            range.hi
        } else {
            range.lo
        })),
        IndexValue::Token { code, .. } => Some(SortValue::Text(interner.resolve(*code))),
        IndexValue::Str { normalized, .. } => Some(SortValue::Text(interner.resolve(*normalized))),
        IndexValue::Ref { resource_type, id } => type_filter
            .accepts(*resource_type)
            .then(|| SortValue::Text(interner.resolve(*id))),
        IndexValue::Quantity(quantity) => Some(SortValue::Float(quantity.value)),
        IndexValue::Text(_) => None,
    });
    if key.descending {
        candidates.max_by(SortValue::compare)
    } else {
        candidates.min_by(SortValue::compare)
    }
}

/// Sorts matches by the keys, resources without a value for a key last whatever the
/// direction, then by id ascending so the order is total.
fn sort_matches(matches: &mut Vec<&Arc<StoredResource>>, keys: &[SortKey], interner: &Interner) {
    let mut decorated: Vec<(Vec<Option<SortValue<'_>>>, &Arc<StoredResource>)> = matches
        .iter()
        .map(|resource| {
            let values = keys
                .iter()
                .map(|key| sort_value(key, resource, interner))
                .collect();
            (values, *resource)
        })
        .collect();
    decorated.sort_by(|(a_values, a), (b_values, b)| {
        for ((a_value, b_value), key) in a_values.iter().zip(b_values).zip(keys) {
            let order = match (a_value, b_value) {
                (Some(a_value), Some(b_value)) => {
                    let order = a_value.compare(b_value);
                    if key.descending {
                        order.reverse()
                    } else {
                        order
                    }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        a.id().cmp(b.id())
    });
    *matches = decorated
        .into_iter()
        .map(|(_, resource)| resource)
        .collect();
}

#[cfg(test)]
mod matching_tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::search::parse;
    use crate::store::Store;

    fn observation(id: &str, category: &str) -> serde_json::Value {
        json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"}
        })
    }

    #[test]
    fn matching_filters_a_given_list_in_its_order() {
        let store = Store::new();
        let mut candidates = Vec::new();
        for (id, category) in [
            ("o1", "laboratory"),
            ("o2", "vital-signs"),
            ("o3", "laboratory"),
        ] {
            candidates.push(
                store
                    .upsert(observation(id, category))
                    .expect("stored")
                    .resource,
            );
        }
        candidates.push(
            store
                .upsert(json!({"resourceType": "Patient", "id": "p1"}))
                .expect("stored")
                .resource,
        );
        candidates.reverse();
        let query = parse("Observation", &[("category", "laboratory")]).expect("parses");
        let kept = store.matching(&query, &candidates);
        let kept_ids: Vec<&str> = kept.iter().map(|r| r.id()).collect();
        assert_eq!(
            kept_ids,
            ["o3", "o1"],
            "candidate order, other types and non-matches left out"
        );
    }

    #[test]
    fn matching_evaluates_the_versions_given_not_the_current_ones() {
        let store = Store::new();
        let old = store
            .upsert(observation("o1", "laboratory"))
            .expect("stored")
            .resource;
        store
            .upsert(observation("o1", "vital-signs"))
            .expect("updated");
        let query = parse("Observation", &[("category", "laboratory")]).expect("parses");
        let kept = store.matching(&query, std::slice::from_ref(&old));
        assert_eq!(kept.len(), 1);
        assert!(
            Arc::ptr_eq(&kept[0], &old),
            "the snapshot version is returned"
        );
        assert!(
            store.search(&query).is_empty(),
            "the current version no longer matches"
        );
    }
}
