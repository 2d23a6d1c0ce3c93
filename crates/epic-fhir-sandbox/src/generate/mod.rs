//! Deterministic synthetic patients for the sandbox.
//!
//! [`generate`] writes a complete, self-consistent FHIR R4 data set to a caller-supplied sink:
//!
//! - Epic's seven named sandbox patients (Derrick Lin, Camila Lopez, Jason and Jessica
//!   Argonaut, Desiree Powell, Linda Ross, Warren McGinnis) with the exact ids, names, birth
//!   dates and sexes of Epic's public sandbox and the data Epic documents for each;
//! - as many synthetic patients as needed to reach [`GenerateConfig::patients`], with years of
//!   Encounters, vital signs, labs, problems, prescriptions, allergies, immunizations,
//!   procedures and appointments (100 patients give roughly 30,000 resources; one synthetic
//!   patient in forty is on home monitoring with well over 1,000 Observations);
//! - per patient, a second pass ([`records`]): lab reports with their orders and specimens,
//!   clinical notes (DocumentReference + Binary), episodes of care, home devices and
//!   medication dispenses;
//! - the Organizations, Locations, Practitioners and PractitionerRoles all of them reference;
//! - Groups for bulk export: every patient, the named patients, patients with type 2 diabetes
//!   and pediatric patients, with stable ids reported in the [`GenerateSummary`].
//!
//! Output is a pure function of the configuration: the same seed, patient count and anchor
//! date give byte-identical resources in the same order, on every machine. Nothing reads the
//! wall clock; all dates are relative to [`GenerateConfig::now`]. Each patient draws from its
//! own random stream, so raising the patient count adds patients without changing earlier ones.
//!
//! ```
//! use epic_fhir_sandbox::generate::{GenerateConfig, generate};
//!
//! let config = GenerateConfig { patients: 10, ..GenerateConfig::default() };
//! let mut resources = Vec::new();
//! let summary = generate(&config, &mut |resource| resources.push(resource))?;
//! assert_eq!(summary.total, resources.len());
//! assert_eq!(summary.named_patients.len(), 7);
//! # Ok::<(), epic_fhir_sandbox::generate::GenerateError>(())
//! ```

mod catalog;
mod fhir;
mod named;
mod people;
mod plan;
mod records;
mod render;
mod rng;
mod synthetic;
#[cfg(test)]
mod tests;
mod timefmt;

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};
use time::macros::{date, time};
use time::{Date, Duration, OffsetDateTime};

use catalog::Cond;
use fhir::{condition_concept, quantity_labelled, reference_to};
use people::Directory;
use render::Rendered;
use rng::Rng;

/// The default generation anchor: a fixed date, so output never changes from day to day.
const DEFAULT_NOW: Date = date!(2026 - 11 - 01);
/// The latest accepted anchor; far enough for any use, early enough that date arithmetic on
/// future appointments cannot leave the calendar.
const LATEST_NOW: Date = date!(2999 - 12 - 31);

/// Random stream numbers, one per kind of thing generated.
const STREAM_DIRECTORY: u64 = 1;
const STREAM_NAMED: u64 = 2;
const STREAM_SYNTHETIC: u64 = 3;
/// The second pass ([`records`]) draws from streams of its own, so adding it changed nothing
/// the first pass writes.
const STREAM_FACILITIES: u64 = 4;
const STREAM_RECORDS: u64 = 5;

const ALL_PATIENTS_GROUP: (&str, &str) = ("eAllSandboxPatients.Group3", "All sandbox patients");
const NAMED_GROUP: (&str, &str) = ("eEpicNamedPatients.Group3", "Epic named test patients");
const DIABETES_GROUP: (&str, &str) = (
    "eType2Diabetes.Cohort.Group3",
    "Patients with type 2 diabetes",
);
const PEDIATRIC_GROUP: (&str, &str) = ("ePediatric.Cohort.Group3", "Pediatric patients (under 18)");

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateConfig {
    /// Seed of the pseudo-random generator (default 1). Different seeds give different
    /// synthetic patients; Epic's named patients keep their ids and demographics.
    pub seed: u64,
    /// Total number of patients, Epic's seven named patients included (default 100). Values
    /// below 7 still produce all seven named patients.
    pub patients: usize,
    /// The generation anchor, "today" for the data set (default 2026-11-01). Histories end the
    /// day before, one visit is in progress on the day and booked appointments lie after it.
    /// Must be between 2016-01-01 and 2999-12-31.
    pub now: Date,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            patients: 100,
            now: DEFAULT_NOW,
        }
    }
}

/// One of Epic's named patients as generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPatient {
    /// Full name, e.g. `Derrick Lin`.
    pub name: String,
    /// FHIR id, e.g. `eq081-VQEgP8drUUqCWzHfw3`.
    pub id: String,
    /// Medical record number in Epic's MRN system, e.g. `E4005`.
    pub mrn: String,
}

/// A generated Group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// FHIR id (stable across seeds and patient counts).
    pub id: String,
    /// The Group's `name`.
    pub name: String,
    /// Number of members.
    pub members: usize,
}

/// What [`generate`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GenerateSummary {
    /// Resources per `resourceType`.
    pub counts: BTreeMap<String, usize>,
    /// All resources delivered to the sink.
    pub total: usize,
    /// Patients generated (named ones included).
    pub patients: usize,
    /// Epic's named patients, in the order of Epic's documentation.
    pub named_patients: Vec<NamedPatient>,
    /// The Groups, the all-patients Group first.
    pub groups: Vec<GroupSummary>,
}

impl GenerateSummary {
    /// The id of the Group holding every generated patient (for `Group/{id}/$export`).
    #[must_use]
    pub fn all_patients_group(&self) -> &str {
        self.groups
            .first()
            .map_or(ALL_PATIENTS_GROUP.0, |g| g.id.as_str())
    }
}

/// A configuration [`generate`] cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// `now` is outside the supported range.
    #[error(
        "generation anchor `now` = {now} is outside the supported range {earliest} to {latest} (Epic's youngest named patient is born 2014-11-14)"
    )]
    NowOutOfRange {
        /// The rejected anchor.
        now: Date,
        /// The earliest accepted anchor.
        earliest: Date,
        /// The latest accepted anchor.
        latest: Date,
    },
}

/// Generates the data set described by `config`, handing each resource to `sink` in a fixed
/// order (Organizations, Practitioners, then each patient with its records, then Groups).
///
/// # Errors
/// [`GenerateError::NowOutOfRange`] when `config.now` is before 2016-01-01 (the named
/// patients' histories would not fit) or after 2999-12-31.
pub fn generate(
    config: &GenerateConfig,
    sink: &mut dyn FnMut(Value),
) -> Result<GenerateSummary, GenerateError> {
    if config.now < named::EARLIEST_NOW || config.now > LATEST_NOW {
        return Err(GenerateError::NowOutOfRange {
            now: config.now,
            earliest: named::EARLIEST_NOW,
            latest: LATEST_NOW,
        });
    }
    let mut world = World {
        ids: Ids::default(),
        out: Output::new(sink),
        clock: Clock::new(config.now),
    };
    // Fixed ids are reserved first so a random id can never collide with one of them.
    for spec in &named::NAMED {
        world.ids.reserve(spec.id);
    }
    for (id, _) in [
        ALL_PATIENTS_GROUP,
        NAMED_GROUP,
        DIABETES_GROUP,
        PEDIATRIC_GROUP,
    ] {
        world.ids.reserve(id);
    }

    let mut directory_rng = Rng::stream(config.seed, STREAM_DIRECTORY, 0);
    let directory = Directory::build(&mut world, &mut directory_rng);
    let mut facilities_rng = Rng::stream(config.seed, STREAM_FACILITIES, 0);
    let mut records = records::Records::build(&mut world, &mut facilities_rng, &directory);

    // No capacity is reserved from `config.patients`: it is caller input, and an absurd count
    // must not abort the process before a single patient is made.
    let mut rendered: Vec<Rendered> = Vec::with_capacity(named::NAMED.len());
    let mut named_patients = Vec::new();
    for (index, spec) in named::NAMED.iter().enumerate() {
        let mut rng = Rng::stream(config.seed, STREAM_NAMED, index as u64);
        let plan = named::plan(spec, &mut rng, world.clock.today, &directory);
        let (patient, history) = render::render(&plan, &mut rng, &mut world, &directory);
        let mut records_rng = Rng::stream(config.seed, STREAM_RECORDS, index as u64);
        records.emit(&history, &mut records_rng, &mut world, &directory);
        named_patients.push(NamedPatient {
            name: patient.display.clone(),
            id: patient.id.clone(),
            mrn: spec.mrn.to_owned(),
        });
        rendered.push(patient);
    }
    let named_count = rendered.len();
    for index in 0..config.patients.saturating_sub(named::NAMED.len()) {
        let mut rng = Rng::stream(config.seed, STREAM_SYNTHETIC, index as u64);
        let plan = synthetic::plan(&mut rng, index, &mut world, &directory);
        let (patient, history) = render::render(&plan, &mut rng, &mut world, &directory);
        let ordinal = (named::NAMED.len() + index) as u64;
        let mut records_rng = Rng::stream(config.seed, STREAM_RECORDS, ordinal);
        records.emit(&history, &mut records_rng, &mut world, &directory);
        rendered.push(patient);
    }

    let all: Vec<&Rendered> = rendered.iter().collect();
    let named: Vec<&Rendered> = rendered.iter().take(named_count).collect();
    let diabetic: Vec<&Rendered> = rendered.iter().filter(|p| p.diabetic).collect();
    let pediatric: Vec<&Rendered> = rendered.iter().filter(|p| p.age < 18).collect();
    let diabetes_trait = json!({
        "code": { "text": "Active problem" },
        "valueCodeableConcept": condition_concept(Cond::Diabetes2),
        "exclude": false,
    });
    let pediatric_trait = json!({
        "code": { "text": "Age" },
        "valueRange": { "high": quantity_labelled(17.0, 0, "years", "a") },
        "exclude": false,
    });
    let groups = vec![
        world.group(ALL_PATIENTS_GROUP, &all, None),
        world.group(NAMED_GROUP, &named, None),
        world.group(DIABETES_GROUP, &diabetic, Some(diabetes_trait)),
        world.group(PEDIATRIC_GROUP, &pediatric, Some(pediatric_trait)),
    ];

    Ok(GenerateSummary {
        total: world.out.total,
        counts: world.out.counts,
        patients: rendered.len(),
        named_patients,
        groups,
    })
}

/// Shared generation state: unique ids, the output sink and the clock.
struct World<'a> {
    ids: Ids,
    out: Output<'a>,
    clock: Clock,
}

impl World<'_> {
    fn group(
        &mut self,
        (id, name): (&str, &str),
        members: &[&Rendered],
        characteristic: Option<Value>,
    ) -> GroupSummary {
        let member: Vec<Value> = members
            .iter()
            .map(|p| json!({ "entity": reference_to("Patient", &p.id, &p.display) }))
            .collect();
        let mut group = json!({
            "resourceType": "Group",
            "id": id,
            "meta": { "lastUpdated": timefmt::utc(self.clock.anchor - Duration::hours(1)) },
            "active": true,
            "type": "person",
            "actual": true,
            "name": name,
            "quantity": members.len(),
            "member": member,
        });
        if let Some(characteristic) = characteristic {
            group["characteristic"] = json!([characteristic]);
        }
        self.out.emit(group);
        GroupSummary {
            id: id.to_owned(),
            name: name.to_owned(),
            members: members.len(),
        }
    }
}

/// The generation's notion of now.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// The anchor date.
    today: Date,
    /// The anchor instant: 15:00 UTC on that date, the morning in every US time zone.
    anchor: OffsetDateTime,
}

impl Clock {
    fn new(today: Date) -> Self {
        Self {
            today,
            anchor: today.with_time(time!(15:00)).assume_utc(),
        }
    }

    /// A `meta.lastUpdated` instant up to `max_minutes` after `after`, never after the anchor.
    fn last_updated_after(&self, rng: &mut Rng, after: OffsetDateTime, max_minutes: i64) -> String {
        let latest = self.anchor - Duration::seconds(1);
        let candidate = after + Duration::seconds(rng.range(30, max_minutes.max(1) * 60));
        timefmt::utc(candidate.min(latest).max(after.min(latest)))
    }

    /// A `meta.lastUpdated` instant within `max_days` before the anchor.
    fn last_updated_before(&self, rng: &mut Rng, max_days: i64) -> String {
        let back = Duration::seconds(rng.range(60, max_days.max(1) * 86_400));
        timefmt::utc(self.anchor - back)
    }
}

/// The characters of Epic's opaque ids.
const ID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-";

/// Hands out unique Epic-like ids: `e`, random characters of `[A-Za-z0-9.-]`, then `3`.
///
/// Only a 64-bit fingerprint of each id is kept, so a data set of millions of resources costs
/// tens of megabytes here rather than hundreds. Two different ids sharing a fingerprint merely
/// cause one extra draw; the fingerprint is a fixed function, so even that stays deterministic.
#[derive(Debug, Default)]
struct Ids {
    used: HashSet<u64>,
}

/// FNV-1a, a fixed (unseeded) 64-bit hash.
fn fingerprint(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Ids {
    fn reserve(&mut self, id: &str) {
        self.used.insert(fingerprint(id));
    }

    /// A new id whose length suits the resource type (Epic's Observation ids run longer than
    /// its Patient ids).
    fn fresh(&mut self, rng: &mut Rng, resource_type: &str) -> String {
        let (low, high) = match resource_type {
            "Patient" => (24, 24),
            "Practitioner" | "Organization" => (22, 26),
            "Encounter" => (24, 28),
            "Observation" | "MedicationRequest" => (44, 48),
            "Condition" | "Immunization" | "Procedure" | "DiagnosticReport" => (40, 44),
            "DocumentReference" | "Binary" => (44, 48),
            "AllergyIntolerance" => (36, 40),
            _ => (30, 34),
        };
        loop {
            let length = rng.range(low, high) as usize;
            let mut id = String::with_capacity(length);
            id.push('e');
            for _ in 0..length - 2 {
                id.push(char::from(*rng.pick(ID_ALPHABET)));
            }
            id.push('3');
            if self.used.insert(fingerprint(&id)) {
                return id;
            }
        }
    }
}

/// Delivers resources to the caller's sink and counts them.
struct Output<'a> {
    sink: &'a mut dyn FnMut(Value),
    counts: BTreeMap<String, usize>,
    total: usize,
}

impl<'a> Output<'a> {
    fn new(sink: &'a mut dyn FnMut(Value)) -> Self {
        Self {
            sink,
            counts: BTreeMap::new(),
            total: 0,
        }
    }

    fn emit(&mut self, resource: Value) {
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("Unknown");
        match self.counts.get_mut(resource_type) {
            Some(count) => *count += 1,
            None => {
                self.counts.insert(resource_type.to_owned(), 1);
            }
        }
        self.total += 1;
        (self.sink)(resource);
    }
}
