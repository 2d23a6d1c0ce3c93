//! `_include` and `_revinclude`: the resources a page of matches refers to, and the
//! resources that refer to the page.

use std::collections::HashSet;
use std::sync::Arc;

use super::eval::TypeFilter;
use super::parse::{Include, ParsedSearch};
use crate::store::{IndexValue, Inner, Store, StoredResource, Sym, TypeTable};

/// Identifies a stored resource for deduplication.
type Key = (Arc<str>, Arc<str>);

impl Store {
    /// The resources that `_include` and `_revinclude` add to one page of matches.
    ///
    /// The result holds each resource once, never repeats a resource of `page`, and is in a
    /// deterministic order: plain includes in page order, then revincludes, then the
    /// `:iterate` rounds. References that resolve to nothing in the store are skipped.
    /// Iterated directives apply to the page and to everything included so far, until a
    /// round adds nothing new.
    pub fn includes(
        &self,
        search: &ParsedSearch,
        page: &[Arc<StoredResource>],
    ) -> Vec<Arc<StoredResource>> {
        let inner = self.read_inner();
        let mut seen: HashSet<Key> = page.iter().map(|resource| resource.key()).collect();
        let mut added: Vec<Arc<StoredResource>> = Vec::new();
        let mut add = |resource: &Arc<StoredResource>, added: &mut Vec<Arc<StoredResource>>| {
            if seen.insert(resource.key()) {
                added.push(Arc::clone(resource));
            }
        };
        for include in search
            .includes()
            .iter()
            .filter(|include| !include.iterate())
        {
            for resource in page {
                for target in referenced(&inner, include, resource) {
                    add(target, &mut added);
                }
            }
        }
        for include in search
            .revincludes()
            .iter()
            .filter(|include| !include.iterate())
        {
            for referrer in referrers(&inner, include, page) {
                add(&referrer, &mut added);
            }
        }
        let iterate_includes: Vec<&Include> = search
            .includes()
            .iter()
            .filter(|include| include.iterate())
            .collect();
        let iterate_revincludes: Vec<&Include> = search
            .revincludes()
            .iter()
            .filter(|include| include.iterate())
            .collect();
        if iterate_includes.is_empty() && iterate_revincludes.is_empty() {
            return added;
        }
        let mut frontier: Vec<Arc<StoredResource>> = page.iter().chain(&added).cloned().collect();
        while !frontier.is_empty() {
            let mut round = Vec::new();
            for include in &iterate_includes {
                for resource in &frontier {
                    for target in referenced(&inner, include, resource) {
                        add(target, &mut round);
                    }
                }
            }
            for include in &iterate_revincludes {
                for referrer in referrers(&inner, include, &frontier) {
                    add(&referrer, &mut round);
                }
            }
            added.extend(round.iter().cloned());
            frontier = round;
        }
        added
    }
}

/// The resources `resource` refers to through `include`'s parameter(s).
fn referenced<'a>(
    inner: &'a Inner,
    include: &'a Include,
    resource: &'a StoredResource,
) -> impl Iterator<Item = &'a Arc<StoredResource>> + 'a {
    let applies = resource.resource_type() == include.source_type();
    include
        .slots
        .iter()
        .filter(move |_| applies)
        .flat_map(move |(slot, restricted)| {
            resource.index.slot(*slot).iter().filter_map(move |value| {
                let IndexValue::Ref { resource_type, id } = value else {
                    return None;
                };
                let written =
                    (!resource_type.is_none()).then(|| inner.interner.resolve(*resource_type));
                // An untyped reference can still be followed when the directive or the
                // parameter says what it points at.
                let resolved_type = written.or(include.target_type()).or(*restricted)?;
                if restricted.is_some_and(|restricted| restricted != resolved_type)
                    || include
                        .target_type()
                        .is_some_and(|target| target != resolved_type)
                {
                    return None;
                }
                let table = inner.tables.get(resolved_type)?;
                table
                    .position(inner.interner.resolve(*id))
                    .and_then(|position| table.current(position))
            })
        })
}

/// The resources of `include`'s source type that refer to any of `targets` through its
/// parameter(s), in creation order.
fn referrers(
    inner: &Inner,
    include: &Include,
    targets: &[Arc<StoredResource>],
) -> Vec<Arc<StoredResource>> {
    let Some(table) = inner.tables.get(include.source_type()) else {
        return Vec::new();
    };
    let wanted: HashSet<(Sym, Sym)> = targets
        .iter()
        .filter(|target| {
            include
                .target_type()
                .is_none_or(|wanted| wanted == target.resource_type())
        })
        .filter_map(|target| {
            Some((
                inner.interner.get(target.resource_type())?,
                inner.interner.get(target.id())?,
            ))
        })
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    // Referrers of patients through the `patient` parameter come straight from the patient
    // index; anything else is a scan of the source type. A parameter sharing the patient
    // slot but restricted to another type (Appointment's `practitioner`) must scan, since
    // the index holds the slot's Patient references whatever the parameter.
    let through_patient_index = include.slots.iter().all(|(slot, restricted)| {
        Some(*slot) == table.schema.patient_slot
            && restricted.is_none_or(|restricted| restricted == "Patient")
    }) && wanted
        .iter()
        .all(|(resource_type, _)| *resource_type == inner.patient_type);
    if through_patient_index {
        let mut positions: Vec<u32> = wanted
            .iter()
            .flat_map(|(_, id)| table.patient_positions(*id).iter().copied())
            .collect();
        positions.sort_unstable();
        positions.dedup();
        return positions
            .into_iter()
            .filter_map(|position| table.current(position).cloned())
            .collect();
    }
    scan_referrers(inner, table, include, &wanted)
}

fn scan_referrers(
    inner: &Inner,
    table: &TypeTable,
    include: &Include,
    wanted: &HashSet<(Sym, Sym)>,
) -> Vec<Arc<StoredResource>> {
    let restricted: Vec<(u8, TypeFilter)> = include
        .slots
        .iter()
        .map(|(slot, restricted)| (*slot, TypeFilter::new(*restricted, &inner.interner)))
        .collect();
    table
        .iter()
        .filter(|(_, resource)| {
            restricted.iter().any(|(slot, filter)| {
                resource.index.slot(*slot).iter().any(|value| match value {
                    IndexValue::Ref { resource_type, id } => {
                        filter.accepts(*resource_type) && wanted.contains(&(*resource_type, *id))
                    }
                    _ => false,
                })
            })
        })
        .map(|(_, resource)| Arc::clone(resource))
        .collect()
}
