//! In-memory resource store.
//!
//! A [`Store`] holds FHIR resources by `(type, id)`, shared by the server through an `Arc`
//! and guarded by one `RwLock`. Every stored version is an immutable
//! `Arc<`[`StoredResource`]`>` holding the compact JSON as [`Bytes`] (served as-is, never
//! re-serialised per request), the version id and `meta.lastUpdated` that the store wrote
//! into that JSON, and the precomputed search index entries of that version. No
//! `serde_json::Value` is kept per resource.
//!
//! Writes never change a stored version: an update stores a new `Arc` and keeps the old one
//! for `vread`. A list of `Arc`s returned by a search is therefore a stable snapshot, however
//! the store changes afterwards.
//!
//! Each type also keeps a patient index, from Patient id to the resources whose `patient`
//! search parameter points at that patient, so patient-scoped searches and the patient
//! compartment never scan a whole type.
//!
//! ```
//! use epic_fhir_sandbox::store::Store;
//! use serde_json::json;
//!
//! let store = Store::new();
//! let written = store.upsert(json!({"resourceType": "Patient", "id": "p1", "gender": "female"}))?;
//! assert_eq!(written.resource.version(), 1);
//! let patient = store.read("Patient", "p1").expect("stored");
//! assert!(std::str::from_utf8(patient.json())?.contains(r#""versionId":"1""#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod load;

mod index;
mod intern;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;

pub(crate) use index::{IndexEntries, IndexValue};
pub(crate) use intern::{Interner, Sym};

use crate::search::registry::{TypeSchema, schema};

/// The longest id FHIR allows.
const MAX_ID_LEN: usize = 64;
/// Length of the ids [`Store::create`] assigns: 22 characters of a 64-letter alphabet carry
/// 132 random bits, enough that collisions never happen in practice (they are still checked).
const GENERATED_ID_LEN: usize = 22;
/// The 64 characters ids are generated from; all are valid FHIR id characters.
const ID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.";
/// Approximate bookkeeping bytes per `Arc` allocation (strong and weak counts).
const ARC_HEADER_BYTES: usize = 16;
/// Approximate bytes of one entry of a `HashMap` keyed by an `Arc<str>` (key, value, control
/// byte and load-factor slack).
const MAP_ENTRY_BYTES: usize = 40;

/// True when `id` is a valid FHIR logical id: 1 to 64 of `[A-Za-z0-9\-.]`.
pub(crate) fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// True when `name` looks like a FHIR resource type name: an ASCII capital followed by ASCII
/// letters and digits, at most 64 characters.
pub(crate) fn is_valid_type_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|first| first.is_ascii_uppercase())
        && name.len() <= MAX_ID_LEN
        && bytes.all(|byte| byte.is_ascii_alphanumeric())
}

/// Why a write was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The body is not an acceptable resource (HTTP 400); `field` names the element at fault.
    #[error("invalid resource: `{field}` {problem}")]
    Invalid {
        /// The offending element, e.g. `id` or `resourceType`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The body's `resourceType` differs from the type the request addressed (HTTP 400).
    #[error("the body's resourceType `{found}` does not match the request's `{expected}`")]
    TypeMismatch {
        /// The type named by the request.
        expected: String,
        /// The type named by the body.
        found: String,
    },
    /// The body's `id` is missing or differs from the id the request addressed (HTTP 400).
    #[error("{}", id_mismatch_message(expected, found.as_deref()))]
    IdMismatch {
        /// The id named by the request.
        expected: String,
        /// The id in the body, if any.
        found: Option<String>,
    },
    /// `If-Match` named a version that is not the current one (HTTP 412).
    #[error(
        "version conflict on {resource_type}/{id}: If-Match expected version {expected}, {}",
        current.map_or_else(|| "but the resource does not exist".to_owned(), |current| format!("current version is {current}"))
    )]
    VersionConflict {
        /// The resource type.
        resource_type: String,
        /// The resource id.
        id: String,
        /// The version the client expected.
        expected: u64,
        /// The current version, or `None` when the resource does not exist.
        current: Option<u64>,
    },
}

fn id_mismatch_message(expected: &str, found: Option<&str>) -> String {
    match found {
        Some(found) => {
            format!("the body's id `{found}` does not match the request's id `{expected}`")
        }
        None => format!("the body has no id; an update of `{expected}` must carry it"),
    }
}

/// The result of a successful write.
#[derive(Clone, Debug)]
pub struct WriteOutcome {
    /// The version just stored.
    pub resource: Arc<StoredResource>,
    /// True when the write created the resource (HTTP 201), false when it added a version
    /// to an existing one (HTTP 200).
    pub created: bool,
}

/// One immutable stored version of a resource.
pub struct StoredResource {
    resource_type: Arc<str>,
    id: Arc<str>,
    version: u64,
    /// `meta.lastUpdated` in microseconds since the epoch (whole milliseconds).
    last_updated: i64,
    json: Bytes,
    pub(crate) index: IndexEntries,
}

impl StoredResource {
    /// The resource type, e.g. `Observation`.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The logical id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The version number, also written as `meta.versionId` (1 for the first version).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When this version was stored, also written as `meta.lastUpdated` (millisecond precision).
    pub fn last_updated(&self) -> OffsetDateTime {
        micros_to_datetime(self.last_updated)
    }

    /// The compact JSON of this version, with `meta.versionId` and `meta.lastUpdated` set;
    /// `resourceType`, `id` and `meta` come first.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The relative reference `Type/id`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.resource_type, self.id)
    }

    /// The `(type, id)` pair identifying the resource, sharing the stored strings.
    pub(crate) fn key(&self) -> (Arc<str>, Arc<str>) {
        (Arc::clone(&self.resource_type), Arc::clone(&self.id))
    }

    /// `meta.lastUpdated` in microseconds since the epoch.
    pub(crate) fn last_updated_micros(&self) -> i64 {
        self.last_updated
    }

    fn approximate_bytes(&self) -> usize {
        self.json.len() + self.index.heap_bytes() + size_of::<StoredResource>() + ARC_HEADER_BYTES
    }
}

impl fmt::Debug for StoredResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredResource")
            .field("resource_type", &self.resource_type)
            .field("id", &self.id)
            .field("version", &self.version)
            .field("last_updated", &self.last_updated())
            .field("json_bytes", &self.json.len())
            .finish_non_exhaustive()
    }
}

/// The source of `meta.lastUpdated` timestamps.
type Clock = Box<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Whose resources [`Store::export_snapshot`] takes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ExportPopulation<'a> {
    /// Every resource of each type (a system-level export).
    Everything,
    /// The compartments of every Patient held (a Patient-level export).
    AllPatients,
    /// The compartments of these Patients, in this order (a Group's members).
    Patients(&'a [String]),
}

/// One consistent state of the store for a bulk export; see [`Store::export_snapshot`].
#[derive(Debug)]
pub(crate) struct ExportSnapshot {
    /// When the snapshot was taken, to the millisecond: it holds every version stamped before
    /// this instant, and every write after it is stamped at or after it.
    pub(crate) transaction_time: OffsetDateTime,
    /// Each requested type that has resources, in the order the types were given, with the
    /// whole type in creation order or the compartments patient by patient, each resource once.
    pub(crate) resources: Vec<(String, Vec<Arc<StoredResource>>)>,
}

/// The in-memory resource store. See the [module documentation](self).
pub struct Store {
    inner: RwLock<Inner>,
    clock: Clock,
}

/// Everything behind the store's lock.
#[derive(Debug)]
pub(crate) struct Inner {
    /// One table per resource type held.
    pub(crate) tables: HashMap<Arc<str>, TypeTable>,
    /// Strings of all index entries.
    pub(crate) interner: Interner,
    /// The symbol of `Patient`, to recognise Patient references quickly.
    pub(crate) patient_type: Sym,
    /// Current resources over all types.
    total: usize,
    /// Approximate bytes of everything but the interner.
    bytes: usize,
    /// The latest `meta.lastUpdated` handed out, so timestamps never go backwards.
    last_timestamp: i64,
}

/// The resources of one type.
#[derive(Debug)]
pub(crate) struct TypeTable {
    /// The type name, shared with every stored version.
    name: Arc<str>,
    /// The type's search parameters and index slots.
    pub(crate) schema: &'static TypeSchema,
    /// Id to position in `entries`.
    ids: HashMap<Arc<str>, u32>,
    /// Resources in creation order; positions never change because nothing is deleted.
    entries: Vec<Entry>,
    /// Patient id (interned) to the positions of the resources whose current version refers
    /// to that patient through the `patient` parameter, ascending.
    by_patient: HashMap<Sym, Vec<u32>>,
}

/// The versions of one resource.
#[derive(Debug)]
struct Entry {
    current: Arc<StoredResource>,
    /// Earlier versions, oldest first.
    history: Vec<Arc<StoredResource>>,
}

impl TypeTable {
    fn new(name: Arc<str>) -> Self {
        TypeTable {
            schema: schema(&name),
            name,
            ids: HashMap::new(),
            entries: Vec::new(),
            by_patient: HashMap::new(),
        }
    }

    /// Number of resources of this type.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The position of a resource by id.
    pub(crate) fn position(&self, id: &str) -> Option<u32> {
        self.ids.get(id).copied()
    }

    /// The current version of the resource at `position`.
    pub(crate) fn current(&self, position: u32) -> Option<&Arc<StoredResource>> {
        self.entries
            .get(position as usize)
            .map(|entry| &entry.current)
    }

    /// All current versions, in creation order, with their positions.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Arc<StoredResource>)> {
        (0_u32..).zip(self.entries.iter().map(|entry| &entry.current))
    }

    /// Positions of the resources referring to the patient with the interned id `patient`.
    pub(crate) fn patient_positions(&self, patient: Sym) -> &[u32] {
        self.by_patient.get(&patient).map_or(&[], Vec::as_slice)
    }
}

impl Inner {
    fn new() -> Self {
        let mut interner = Interner::default();
        let patient_type = interner.intern("Patient");
        Inner {
            tables: HashMap::new(),
            interner,
            patient_type,
            total: 0,
            bytes: 0,
            last_timestamp: i64::MIN,
        }
    }
}

/// Where a write goes in its type's table.
#[derive(Clone, Copy)]
enum Placement {
    /// A new version of the resource at `position`, whose current version is `version`.
    Existing { position: u32, version: u64 },
    /// A new resource, appended at `position`.
    New { position: u32 },
}

/// Which write is being performed.
enum WriteMode<'a> {
    /// Insert or replace by the body's own type and id.
    Upsert,
    /// Insert with a fresh id under the given type.
    Create { resource_type: &'a str },
    /// Replace `resource_type/id`, optionally only if the current version is `if_match`.
    Update {
        resource_type: &'a str,
        id: &'a str,
        if_match: Option<u64>,
    },
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read_inner();
        f.debug_struct("Store")
            .field("total", &inner.total)
            .field("types", &inner.tables.len())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store whose `meta.lastUpdated` values come from the system clock.
    pub fn new() -> Self {
        Store::with_clock(OffsetDateTime::now_utc)
    }

    /// An empty store with its own source of `meta.lastUpdated` timestamps.
    pub(crate) fn with_clock(clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Store {
            inner: RwLock::new(Inner::new()),
            clock: Box::new(clock),
        }
    }

    /// Inserts a resource, or adds a new version of it, using the body's own `resourceType`
    /// and `id` (both required). This is what loaders and `PUT` without preconditions use.
    ///
    /// The store sets `meta.versionId` and `meta.lastUpdated`, replacing any values in the
    /// body, and keeps the rest of `meta` (tags, profiles...).
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] when the body is not an object, lacks a valid `resourceType`
    /// or `id`, or has a `meta` that is not an object.
    pub fn upsert(&self, resource: Value) -> Result<WriteOutcome, StoreError> {
        self.write(resource, WriteMode::Upsert)
    }

    /// Creates a resource of `resource_type` under a new random id (FHIR `POST`). An id in
    /// the body is ignored, as FHIR requires.
    ///
    /// # Errors
    ///
    /// [`StoreError::TypeMismatch`] when the body's `resourceType` is not `resource_type`,
    /// and [`StoreError::Invalid`] for bodies [`Store::upsert`] would refuse.
    pub fn create(&self, resource_type: &str, resource: Value) -> Result<WriteOutcome, StoreError> {
        self.write(resource, WriteMode::Create { resource_type })
    }

    /// Replaces `resource_type/id` with a new version (FHIR `PUT`), creating it when absent.
    ///
    /// The body's `resourceType` and `id` must match the request
    /// ([`StoreError::TypeMismatch`], [`StoreError::IdMismatch`]). With `if_match`, the write
    /// only happens if the current version is that one ([`StoreError::VersionConflict`]
    /// otherwise, including when the resource does not exist).
    ///
    /// # Errors
    ///
    /// [`StoreError::TypeMismatch`], [`StoreError::IdMismatch`] and
    /// [`StoreError::VersionConflict`] as above, and [`StoreError::Invalid`] for an invalid
    /// `id` or a body [`Store::upsert`] would refuse.
    pub fn update(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<u64>,
    ) -> Result<WriteOutcome, StoreError> {
        self.write(
            resource,
            WriteMode::Update {
                resource_type,
                id,
                if_match,
            },
        )
    }

    /// The current version of a resource.
    pub fn read(&self, resource_type: &str, id: &str) -> Option<Arc<StoredResource>> {
        let inner = self.read_inner();
        let table = inner.tables.get(resource_type)?;
        table
            .position(id)
            .and_then(|position| table.current(position))
            .cloned()
    }

    /// One version of a resource (current or earlier). `None` when either the resource or
    /// that version does not exist; [`Store::read`] tells the two apart.
    pub fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> Option<Arc<StoredResource>> {
        let inner = self.read_inner();
        let table = inner.tables.get(resource_type)?;
        let entry = table.entries.get(table.position(id)? as usize)?;
        std::iter::once(&entry.current)
            .chain(&entry.history)
            .find(|stored| stored.version == version)
            .cloned()
    }

    /// Number of resources of one type (current versions).
    pub fn count(&self, resource_type: &str) -> usize {
        self.read_inner()
            .tables
            .get(resource_type)
            .map_or(0, TypeTable::len)
    }

    /// Number of resources of all types (current versions).
    pub fn total(&self) -> usize {
        self.read_inner().total
    }

    /// The resource types held, sorted by name.
    pub fn types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .read_inner()
            .tables
            .keys()
            .map(|name| name.to_string())
            .collect();
        types.sort_unstable();
        types
    }

    /// An estimate of the memory the store uses, in bytes: the JSON of every version, the
    /// index entries, the interned strings, and an estimate of map and bookkeeping overhead.
    pub fn memory_bytes(&self) -> usize {
        let inner = self.read_inner();
        inner.bytes + inner.interner.heap_bytes()
    }

    /// The current versions of all resources of one type, in creation order (for bulk export).
    pub fn resources(&self, resource_type: &str) -> Vec<Arc<StoredResource>> {
        let inner = self.read_inner();
        inner
            .tables
            .get(resource_type)
            .map_or_else(Vec::new, |table| {
                table
                    .entries
                    .iter()
                    .map(|entry| Arc::clone(&entry.current))
                    .collect()
            })
    }

    /// The resources of one type in a patient's compartment: those whose `patient` search
    /// parameter refers to `Patient/{patient_id}`, in creation order.
    pub fn patient_resources(
        &self,
        resource_type: &str,
        patient_id: &str,
    ) -> Vec<Arc<StoredResource>> {
        let inner = self.read_inner();
        let (Some(table), Some(patient)) = (
            inner.tables.get(resource_type),
            inner.interner.get(patient_id),
        ) else {
            return Vec::new();
        };
        table
            .patient_positions(patient)
            .iter()
            .filter_map(|&position| table.current(position).cloned())
            .collect()
    }

    /// Whether `resource` is in the compartment of patient `patient_id`: the Patient itself,
    /// or a resource whose `patient` search parameter refers to it. A type without a `patient`
    /// parameter (Practitioner, Group...) is in no patient's compartment.
    pub fn refers_to_patient(&self, resource: &StoredResource, patient_id: &str) -> bool {
        if resource.resource_type() == "Patient" {
            return resource.id() == patient_id;
        }
        let Some(slot) = schema(resource.resource_type()).patient_slot else {
            return false;
        };
        let inner = self.read_inner();
        let Some(patient) = inner.interner.get(patient_id) else {
            return false;
        };
        let patient_type = inner.patient_type;
        resource.index.slot(slot).iter().any(|value| {
            matches!(value, IndexValue::Ref { resource_type, id } if *resource_type == patient_type && *id == patient)
        })
    }

    /// A patient's compartment: the Patient itself (first, when it exists), then every
    /// resource whose `patient` search parameter refers to it, by type name and then in
    /// creation order.
    pub fn patient_compartment(&self, patient_id: &str) -> Vec<Arc<StoredResource>> {
        let inner = self.read_inner();
        let mut out = Vec::new();
        if let Some(patients) = inner.tables.get("Patient")
            && let Some(patient) = patients
                .position(patient_id)
                .and_then(|position| patients.current(position))
        {
            out.push(Arc::clone(patient));
        }
        let Some(patient) = inner.interner.get(patient_id) else {
            return out;
        };
        let mut tables: Vec<&TypeTable> = inner.tables.values().collect();
        tables.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for table in tables {
            out.extend(
                table
                    .patient_positions(patient)
                    .iter()
                    .filter_map(|&position| table.current(position).cloned()),
            );
        }
        out
    }

    /// The current versions a bulk export holds, all taken under one lock, with the export's
    /// `transactionTime`.
    ///
    /// Collecting type by type (or patient by patient) under separate locks would let writes
    /// land in between: the export would match no single state of the store, and a resource
    /// moved from one patient to another could even be taken twice. The write lock is taken,
    /// although nothing but the latest timestamp changes, so that the transaction time is also
    /// reserved: every later write is stamped at or after it, even one that read the clock
    /// before the snapshot and committed after it. A `_since` export from this transaction
    /// time therefore misses nothing.
    pub(crate) fn export_snapshot<'t>(
        &self,
        population: ExportPopulation<'_>,
        types: impl IntoIterator<Item = &'t str>,
    ) -> ExportSnapshot {
        let now = truncate_to_millis(datetime_to_micros((self.clock)()));
        let mut guard = self.write_inner();
        let transaction_time = now.max(guard.last_timestamp);
        guard.last_timestamp = transaction_time;
        let inner = &*guard;
        let patients: Option<Vec<&str>> = match population {
            ExportPopulation::Everything => None,
            ExportPopulation::AllPatients => {
                Some(inner.tables.get("Patient").map_or_else(Vec::new, |table| {
                    table.iter().map(|(_, patient)| patient.id()).collect()
                }))
            }
            ExportPopulation::Patients(ids) => Some(ids.iter().map(String::as_str).collect()),
        };
        let mut resources = Vec::new();
        for resource_type in types {
            let Some(table) = inner.tables.get(resource_type) else {
                continue;
            };
            let list: Vec<Arc<StoredResource>> = match &patients {
                None => table
                    .iter()
                    .map(|(_, resource)| Arc::clone(resource))
                    .collect(),
                Some(ids) => {
                    // A resource referring to several of the patients is taken once, with the
                    // first of them.
                    let mut seen = std::collections::HashSet::new();
                    let mut list = Vec::new();
                    let mut take = |position: u32| {
                        if seen.insert(position)
                            && let Some(resource) = table.current(position)
                        {
                            list.push(Arc::clone(resource));
                        }
                    };
                    for id in ids {
                        if resource_type == "Patient" {
                            table.position(id).into_iter().for_each(&mut take);
                        } else if let Some(patient) = inner.interner.get(id) {
                            table
                                .patient_positions(patient)
                                .iter()
                                .copied()
                                .for_each(&mut take);
                        }
                    }
                    list
                }
            };
            if !list.is_empty() {
                resources.push((resource_type.to_owned(), list));
            }
        }
        ExportSnapshot {
            transaction_time: micros_to_datetime(transaction_time),
            resources,
        }
    }

    /// Takes the read lock. A panic in another thread while it held the lock cannot leave the
    /// store half-written (every write mutates only after all fallible steps), so a poisoned
    /// lock is simply taken over.
    pub(crate) fn read_inner(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_inner(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Validates, serialises and indexes outside the lock, then commits under it.
    fn write(&self, mut resource: Value, mode: WriteMode<'_>) -> Result<WriteOutcome, StoreError> {
        let prepared = prepare(&mut resource, mode)?;
        let raw_index = index::extract(schema(&prepared.resource_type), &resource);
        let now = truncate_to_millis(datetime_to_micros((self.clock)()));
        self.write_inner().commit(prepared, raw_index, now)
    }
}

/// A validated write, serialised except for the parts only known under the lock (the id of
/// a create, the version and the timestamp).
struct Prepared {
    resource_type: String,
    /// The id to write; `None` for a create, which draws one under the lock.
    id: Option<String>,
    if_match: Option<u64>,
    /// The members of `meta` other than `versionId` and `lastUpdated`, as `,"k":v` pairs.
    meta_rest: Vec<u8>,
    /// The members of the resource other than `resourceType`, `id` and `meta`, likewise.
    body_rest: Vec<u8>,
}

/// Validates `resource` for `mode`, takes its `meta` out (the store writes its own) and
/// serialises the rest.
fn prepare(resource: &mut Value, mode: WriteMode<'_>) -> Result<Prepared, StoreError> {
    let invalid = |field: &'static str, problem: &str| StoreError::Invalid {
        field,
        problem: problem.to_owned(),
    };
    let Value::Object(map) = resource else {
        return Err(invalid("resource", "must be a JSON object"));
    };
    let resource_type = match map.get("resourceType") {
        Some(Value::String(name)) if is_valid_type_name(name) => name.clone(),
        Some(Value::String(name)) => {
            return Err(invalid(
                "resourceType",
                &format!("`{name}` is not a resource type name"),
            ));
        }
        Some(_) => return Err(invalid("resourceType", "must be a string")),
        None => return Err(invalid("resourceType", "is missing")),
    };
    let body_id = match map.get("id") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(invalid("id", "must be a string")),
        None => None,
    };
    let (id, if_match) = match mode {
        WriteMode::Upsert => {
            let id =
                body_id.ok_or_else(|| invalid("id", "is missing (only create assigns ids)"))?;
            (Some(valid_id(id)?), None)
        }
        WriteMode::Create {
            resource_type: expected,
        } => {
            check_type(expected, &resource_type)?;
            (None, None)
        }
        WriteMode::Update {
            resource_type: expected,
            id,
            if_match,
        } => {
            check_type(expected, &resource_type)?;
            let id = valid_id(id.to_owned())?;
            if body_id.as_deref() != Some(id.as_str()) {
                return Err(StoreError::IdMismatch {
                    expected: id,
                    found: body_id,
                });
            }
            (Some(id), if_match)
        }
    };
    let meta = match map.remove("meta") {
        None => Map::new(),
        Some(Value::Object(meta)) => meta,
        Some(_) => return Err(invalid("meta", "must be an object")),
    };
    Ok(Prepared {
        resource_type,
        id,
        if_match,
        meta_rest: serialize_members(&meta, &["versionId", "lastUpdated"]),
        body_rest: serialize_members(map, &["resourceType", "id"]),
    })
}

impl Inner {
    /// Stores a prepared write: checks the precondition, then mutates. Nothing is changed
    /// when an error is returned.
    fn commit(
        &mut self,
        prepared: Prepared,
        raw_index: index::RawIndex<'_>,
        now: i64,
    ) -> Result<WriteOutcome, StoreError> {
        let Prepared {
            resource_type,
            id,
            if_match,
            meta_rest,
            body_rest,
        } = prepared;
        let existing_table = self.tables.get(resource_type.as_str());
        let id = id.unwrap_or_else(|| {
            fresh_id(|candidate| {
                existing_table.is_some_and(|table| table.ids.contains_key(candidate))
            })
        });
        let current = existing_table.and_then(|table| {
            let position = table.position(&id)?;
            Some((position, table.current(position)?.version))
        });
        if let Some(expected) = if_match
            && current.map(|(_, version)| version) != Some(expected)
        {
            return Err(StoreError::VersionConflict {
                resource_type,
                id,
                expected,
                current: current.map(|(_, version)| version),
            });
        }
        let placement = match current {
            Some((position, version)) => Placement::Existing { position, version },
            None => {
                let count = existing_table.map_or(0, TypeTable::len);
                let position = u32::try_from(count).map_err(|_| StoreError::Invalid {
                    field: "resourceType",
                    problem: format!(
                        "the store already holds the most {resource_type} resources it can"
                    ),
                })?;
                Placement::New { position }
            }
        };

        // Everything fallible is done; from here on the store is only mutated.
        let timestamp = now.max(self.last_timestamp);
        self.last_timestamp = timestamp;
        let version = match placement {
            Placement::Existing { version, .. } => version + 1,
            Placement::New { .. } => 1,
        };
        let index = raw_index.intern(&mut self.interner);
        let json = assemble_json(
            &resource_type,
            &id,
            version,
            timestamp,
            &meta_rest,
            &body_rest,
        );
        let type_key = self
            .tables
            .get_key_value(resource_type.as_str())
            .map_or_else(
                || Arc::from(resource_type.as_str()),
                |(key, _)| Arc::clone(key),
            );
        let table = self
            .tables
            .entry(Arc::clone(&type_key))
            .or_insert_with(|| TypeTable::new(type_key));
        let id: Arc<str> = table
            .ids
            .get_key_value(id.as_str())
            .map_or_else(|| Arc::from(id), |(key, _)| Arc::clone(key));
        let stored = Arc::new(StoredResource {
            resource_type: Arc::clone(&table.name),
            id,
            version,
            last_updated: timestamp,
            json,
            index,
        });
        self.bytes += stored.approximate_bytes();
        let patients = patients_of(table.schema, &stored.index, self.patient_type);
        let created = match placement {
            Placement::Existing { position, .. } => {
                self.bytes += table.add_version(position, &stored, &patients, self.patient_type);
                false
            }
            Placement::New { position } => {
                self.bytes += table.add_resource(position, &stored, &patients);
                self.total += 1;
                true
            }
        };
        Ok(WriteOutcome {
            resource: stored,
            created,
        })
    }
}

impl TypeTable {
    /// Makes `stored` the current version of the resource at `position`, moving it between
    /// patient index lists as needed. Returns the bytes added.
    fn add_version(
        &mut self,
        position: u32,
        stored: &Arc<StoredResource>,
        patients: &[Sym],
        patient_type: Sym,
    ) -> usize {
        let Some(entry) = self.entries.get_mut(position as usize) else {
            return 0;
        };
        let previous = std::mem::replace(&mut entry.current, Arc::clone(stored));
        let old_patients = patients_of(self.schema, &previous.index, patient_type);
        entry.history.push(previous);
        let mut added = size_of::<Arc<StoredResource>>();
        for patient in old_patients
            .iter()
            .filter(|patient| !patients.contains(patient))
        {
            if let Some(positions) = self.by_patient.get_mut(patient)
                && let Ok(found) = positions.binary_search(&position)
            {
                positions.remove(found);
            }
        }
        for patient in patients
            .iter()
            .filter(|patient| !old_patients.contains(patient))
        {
            let positions = self.by_patient.entry(*patient).or_default();
            if let Err(insert_at) = positions.binary_search(&position) {
                positions.insert(insert_at, position);
                added += size_of::<u32>();
            }
        }
        added
    }

    /// Appends a new resource at `position` (the end) and indexes its patients. Returns the
    /// bytes added.
    fn add_resource(
        &mut self,
        position: u32,
        stored: &Arc<StoredResource>,
        patients: &[Sym],
    ) -> usize {
        let mut added = size_of::<Entry>() + MAP_ENTRY_BYTES + stored.id.len() + ARC_HEADER_BYTES;
        self.ids.insert(Arc::clone(&stored.id), position);
        self.entries.push(Entry {
            current: Arc::clone(stored),
            history: Vec::new(),
        });
        for patient in patients {
            // A new position is the largest so far, so pushing keeps the list sorted.
            let positions = self.by_patient.entry(*patient).or_insert_with(|| {
                added += MAP_ENTRY_BYTES;
                Vec::new()
            });
            positions.push(position);
            added += size_of::<u32>();
        }
        added
    }
}

/// The Patient ids (interned) that a resource version refers to through its type's
/// `patient` parameter, sorted and deduplicated.
fn patients_of(schema: &TypeSchema, index: &IndexEntries, patient_type: Sym) -> Vec<Sym> {
    let Some(slot) = schema.patient_slot else {
        return Vec::new();
    };
    let mut patients: Vec<Sym> = index
        .slot(slot)
        .iter()
        .filter_map(|value| match value {
            IndexValue::Ref { resource_type, id } if *resource_type == patient_type => Some(*id),
            _ => None,
        })
        .collect();
    patients.sort_unstable();
    patients.dedup();
    patients
}

fn check_type(expected: &str, found: &str) -> Result<(), StoreError> {
    if expected == found {
        Ok(())
    } else {
        Err(StoreError::TypeMismatch {
            expected: expected.to_owned(),
            found: found.to_owned(),
        })
    }
}

fn valid_id(id: String) -> Result<String, StoreError> {
    if is_valid_id(&id) {
        Ok(id)
    } else {
        Err(StoreError::Invalid {
            field: "id",
            problem: format!("`{id}` must be 1 to 64 characters of [A-Za-z0-9-.]"),
        })
    }
}

/// Serialises the members of `map` other than `skip` as `,"key":value` pairs.
fn serialize_members(map: &Map<String, Value>, skip: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in map {
        if skip.contains(&key.as_str()) {
            continue;
        }
        let start = out.len();
        out.push(b',');
        // Writing a string key and an in-memory Value to a Vec cannot fail; should it ever,
        // the member is dropped whole so that the stored JSON stays well-formed.
        let written = serde_json::to_writer(&mut out, key).and_then(|()| {
            out.push(b':');
            serde_json::to_writer(&mut out, value)
        });
        if let Err(error) = written {
            out.truncate(start);
            tracing::warn!(%key, %error, "member could not be serialised; it was dropped");
        }
    }
    out
}

/// Builds the stored JSON: `resourceType`, `id` and `meta` first, then the other members.
fn assemble_json(
    resource_type: &str,
    id: &str,
    version: u64,
    timestamp: i64,
    meta_rest: &[u8],
    body_rest: &[u8],
) -> Bytes {
    // The type and id are validated to need no JSON escaping.
    let head = format!(
        r#"{{"resourceType":"{resource_type}","id":"{id}","meta":{{"versionId":"{version}","lastUpdated":"{}""#,
        format_instant(timestamp)
    );
    let mut json = Vec::with_capacity(head.len() + meta_rest.len() + body_rest.len() + 2);
    json.extend_from_slice(head.as_bytes());
    json.extend_from_slice(meta_rest);
    json.push(b'}');
    json.extend_from_slice(body_rest);
    json.push(b'}');
    Bytes::from(json)
}

/// Picks a random id that `taken` does not reject.
fn fresh_id(taken: impl Fn(&str) -> bool) -> String {
    loop {
        let mut random = [0_u8; GENERATED_ID_LEN];
        if aws_lc_rs::rand::fill(&mut random).is_err() {
            fallback_random(&mut random);
        }
        let id: String = random
            .iter()
            .map(|byte| char::from(ID_ALPHABET[usize::from(byte & 63)]))
            .collect();
        if !taken(&id) {
            return id;
        }
    }
}

/// Fills `out` from std's randomly keyed hasher, for the (never observed) case where the
/// system random source fails; uniqueness is still checked by the caller.
fn fallback_random(out: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::hash::RandomState::new();
    for chunk in out.chunks_mut(8) {
        let mut hasher = state.build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let bytes = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn datetime_to_micros(datetime: OffsetDateTime) -> i64 {
    i64::try_from(datetime.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn micros_to_datetime(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn truncate_to_millis(micros: i64) -> i64 {
    micros - micros.rem_euclid(1000)
}

/// Formats a timestamp as a FHIR instant in UTC with milliseconds, e.g.
/// `2024-05-01T12:00:00.123Z`.
fn format_instant(micros: i64) -> String {
    let datetime = micros_to_datetime(micros);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        datetime.year(),
        u8::from(datetime.month()),
        datetime.day(),
        datetime.hour(),
        datetime.minute(),
        datetime.second(),
        datetime.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A store whose clock reads `seconds` (since the epoch) from a shared cell.
    fn store_at(seconds: Arc<AtomicI64>) -> Store {
        Store::with_clock(move || {
            OffsetDateTime::from_unix_timestamp(seconds.load(Ordering::SeqCst))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        })
    }

    fn fixed_store() -> Store {
        store_at(Arc::new(AtomicI64::new(1_700_000_000)))
    }

    fn json_text(resource: &StoredResource) -> &str {
        std::str::from_utf8(resource.json()).expect("stored JSON is UTF-8")
    }

    fn parsed(resource: &StoredResource) -> Value {
        serde_json::from_slice(resource.json()).expect("stored JSON parses")
    }

    #[test]
    fn store_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
        assert_send_sync::<Arc<StoredResource>>();
    }

    #[test]
    fn upsert_writes_meta_first_and_keeps_the_rest() {
        let store = fixed_store();
        let body = json!({
            "name": [{"family": "Lin", "given": ["Derrick"]}],
            "meta": {"versionId": "99", "lastUpdated": "1999-01-01T00:00:00Z",
                     "tag": [{"system": "https://smarthealthit.org/tags", "code": "synthea-5-2019"}]},
            "id": "p1",
            "resourceType": "Patient",
            "birthDate": "1973-06-03"
        });
        let written = store.upsert(body.clone()).expect("valid");
        assert!(written.created);
        let text = json_text(&written.resource);
        assert!(
            text.starts_with(
                r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2023-11-14T22:13:20.000Z","tag":"#
            ),
            "{text}"
        );
        let mut expected = body;
        expected["meta"]["versionId"] = json!("1");
        expected["meta"]["lastUpdated"] = json!("2023-11-14T22:13:20.000Z");
        assert_eq!(parsed(&written.resource), expected);
        assert_eq!(written.resource.reference(), "Patient/p1");
        assert_eq!(
            written.resource.last_updated(),
            OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time")
        );
    }

    #[test]
    fn resources_without_meta_get_one() {
        let store = fixed_store();
        let written = store
            .upsert(json!({"resourceType": "Basic", "id": "b"}))
            .expect("valid");
        assert_eq!(
            json_text(&written.resource),
            r#"{"resourceType":"Basic","id":"b","meta":{"versionId":"1","lastUpdated":"2023-11-14T22:13:20.000Z"}}"#
        );
    }

    #[test]
    fn versions_are_kept_for_vread() {
        let store = fixed_store();
        store
            .upsert(json!({"resourceType": "Patient", "id": "p1", "gender": "male"}))
            .expect("v1");
        let second = store
            .upsert(json!({"resourceType": "Patient", "id": "p1", "gender": "female"}))
            .expect("v2");
        assert!(!second.created);
        assert_eq!(second.resource.version(), 2);
        let current = store.read("Patient", "p1").expect("current");
        assert_eq!(current.version(), 2);
        assert_eq!(parsed(&current)["gender"], "female");
        let first = store.vread("Patient", "p1", 1).expect("version 1");
        assert_eq!(parsed(&first)["gender"], "male");
        assert_eq!(parsed(&first)["meta"]["versionId"], "1");
        assert!(store.vread("Patient", "p1", 3).is_none());
        assert!(store.vread("Patient", "nobody", 1).is_none());
        assert!(store.read("Patient", "nobody").is_none());
        assert!(store.read("Observation", "p1").is_none());
        assert_eq!(store.count("Patient"), 1);
        assert_eq!(store.total(), 1);
    }

    #[test]
    fn update_checks_type_id_and_version() {
        let store = fixed_store();
        let patient = |id: &str| json!({"resourceType": "Patient", "id": id});
        let created = store
            .update("Patient", "p1", patient("p1"), None)
            .expect("create by update");
        assert!(created.created);

        assert_eq!(
            store
                .update("Observation", "p1", patient("p1"), None)
                .expect_err("type"),
            StoreError::TypeMismatch {
                expected: "Observation".into(),
                found: "Patient".into()
            }
        );
        assert_eq!(
            store
                .update("Patient", "p1", patient("p2"), None)
                .expect_err("id"),
            StoreError::IdMismatch {
                expected: "p1".into(),
                found: Some("p2".into())
            }
        );
        let missing_id = store
            .update("Patient", "p1", json!({"resourceType": "Patient"}), None)
            .expect_err("no id");
        assert_eq!(
            missing_id,
            StoreError::IdMismatch {
                expected: "p1".into(),
                found: None
            }
        );
        assert!(missing_id.to_string().contains("has no id"));

        let conflict = store
            .update("Patient", "p1", patient("p1"), Some(7))
            .expect_err("412");
        assert_eq!(
            conflict,
            StoreError::VersionConflict {
                resource_type: "Patient".into(),
                id: "p1".into(),
                expected: 7,
                current: Some(1)
            }
        );
        assert!(conflict.to_string().contains("current version is 1"));
        let updated = store
            .update("Patient", "p1", patient("p1"), Some(1))
            .expect("matching version");
        assert_eq!(updated.resource.version(), 2);
        assert!(!updated.created);

        let absent = store
            .update("Patient", "p9", patient("p9"), Some(1))
            .expect_err("absent");
        assert!(matches!(
            absent,
            StoreError::VersionConflict { current: None, .. }
        ));
        assert!(absent.to_string().contains("does not exist"));
        // Failed writes leave nothing behind.
        assert_eq!(store.types(), ["Patient"]);
        assert_eq!(store.count("Patient"), 1);
    }

    #[test]
    fn create_assigns_fresh_valid_ids() {
        let store = fixed_store();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let written = store
                .create(
                    "Observation",
                    json!({"resourceType": "Observation", "id": "ignored", "status": "final"}),
                )
                .expect("create");
            assert!(written.created);
            let id = written.resource.id().to_owned();
            assert_eq!(id.len(), GENERATED_ID_LEN);
            assert!(is_valid_id(&id), "{id}");
            assert_ne!(id, "ignored");
            assert_eq!(parsed(&written.resource)["id"], json!(id));
            assert!(seen.insert(id));
        }
        assert_eq!(store.count("Observation"), 50);
        assert!(matches!(
            store.create("Patient", json!({"resourceType": "Observation"})),
            Err(StoreError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn invalid_resources_name_the_field() {
        let store = fixed_store();
        let cases = [
            (json!([1, 2]), "resource"),
            (json!({"id": "x"}), "resourceType"),
            (json!({"resourceType": 5, "id": "x"}), "resourceType"),
            (
                json!({"resourceType": "patient", "id": "x"}),
                "resourceType",
            ),
            (json!({"resourceType": "Patient"}), "id"),
            (json!({"resourceType": "Patient", "id": 5}), "id"),
            (json!({"resourceType": "Patient", "id": "has space"}), "id"),
            (
                json!({"resourceType": "Patient", "id": "under_score"}),
                "id",
            ),
            (
                json!({"resourceType": "Patient", "id": "x".repeat(65)}),
                "id",
            ),
            (json!({"resourceType": "Patient", "id": ""}), "id"),
            (
                json!({"resourceType": "Patient", "id": "ok", "meta": "no"}),
                "meta",
            ),
        ];
        for (body, expected) in cases {
            match store.upsert(body.clone()) {
                Err(StoreError::Invalid { field, .. }) => assert_eq!(field, expected, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(store.total(), 0);
        assert!(store.types().is_empty());
        assert!(
            store
                .upsert(json!({"resourceType": "Patient", "id": "x".repeat(64)}))
                .is_ok()
        );
        assert!(
            store
                .upsert(json!({"resourceType": "Patient", "id": "A-z.0"}))
                .is_ok()
        );
    }

    #[test]
    fn last_updated_never_goes_backwards() {
        let clock = Arc::new(AtomicI64::new(1_700_000_000));
        let store = store_at(Arc::clone(&clock));
        let first = store
            .upsert(json!({"resourceType": "Basic", "id": "a"}))
            .expect("a");
        clock.store(1_600_000_000, Ordering::SeqCst);
        let second = store
            .upsert(json!({"resourceType": "Basic", "id": "b"}))
            .expect("b");
        assert_eq!(
            second.resource.last_updated(),
            first.resource.last_updated()
        );
        clock.store(1_800_000_000, Ordering::SeqCst);
        let third = store
            .upsert(json!({"resourceType": "Basic", "id": "a"}))
            .expect("a again");
        assert!(third.resource.last_updated() > first.resource.last_updated());
    }

    #[test]
    fn counts_types_and_memory() {
        let store = fixed_store();
        assert_eq!(store.memory_bytes(), Inner::new().interner.heap_bytes());
        let mut json_bytes = 0;
        for index in 0..20 {
            let written = store
                .upsert(json!({"resourceType": "Observation", "id": format!("o{index}"), "status": "final",
                               "subject": {"reference": "Patient/p1"}}))
                .expect("valid");
            json_bytes += written.resource.json().len();
        }
        store
            .upsert(json!({"resourceType": "Patient", "id": "p1"}))
            .expect("valid");
        assert_eq!(store.count("Observation"), 20);
        assert_eq!(store.count("Condition"), 0);
        assert_eq!(store.total(), 21);
        assert_eq!(store.types(), ["Observation", "Patient"]);
        let memory = store.memory_bytes();
        assert!(memory > json_bytes, "{memory} <= {json_bytes}");
        // Proportional to the data: a generous bound per resource for these small ones.
        assert!(memory < 21 * 2048, "{memory}");
        let ids: Vec<String> = store
            .resources("Observation")
            .iter()
            .map(|r| r.id().to_owned())
            .collect();
        assert_eq!(ids.len(), 20);
        assert_eq!(ids[0], "o0");
        assert_eq!(ids[19], "o19");
        assert!(store.resources("Condition").is_empty());
    }

    #[test]
    fn patient_index_and_compartment() {
        let store = fixed_store();
        for resource in [
            json!({"resourceType": "Patient", "id": "p1"}),
            json!({"resourceType": "Patient", "id": "p2"}),
            json!({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}}),
            json!({"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/p2"}}),
            json!({"resourceType": "Observation", "id": "o3", "subject": {"reference": "Group/p1"}}),
            json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "http://x/fhir/Patient/p1"}}),
            json!({"resourceType": "Immunization", "id": "i1", "patient": {"reference": "Patient/p1"}}),
            json!({"resourceType": "Provenance", "id": "v1", "target": [{"reference": "Patient/p1"}, {"reference": "Patient/p2"}]}),
            json!({"resourceType": "Basic", "id": "b1", "subject": {"reference": "Patient/p1"}}),
        ] {
            store.upsert(resource).expect("valid");
        }
        let references = |resources: Vec<Arc<StoredResource>>| -> Vec<String> {
            resources
                .iter()
                .map(|resource| resource.reference())
                .collect()
        };
        let membership = |reference: &str, patient: &str| {
            let (t, id) = reference.split_once('/').expect("reference");
            store.refers_to_patient(&store.read(t, id).expect("stored"), patient)
        };
        assert!(membership("Patient/p1", "p1"));
        assert!(!membership("Patient/p2", "p1"));
        assert!(membership("Observation/o1", "p1"));
        assert!(!membership("Observation/o2", "p1"));
        assert!(
            !membership("Observation/o3", "p1"),
            "a Group reference is not a patient's"
        );
        assert!(membership("Condition/c1", "p1"));
        assert!(membership("Provenance/v1", "p1") && membership("Provenance/v1", "p2"));
        assert!(
            !membership("Basic/b1", "p1"),
            "Basic has no patient parameter"
        );
        assert!(!membership("Observation/o1", "nobody"));
        assert_eq!(
            references(store.patient_compartment("p1")),
            [
                "Patient/p1",
                "Condition/c1",
                "Immunization/i1",
                "Observation/o1",
                "Provenance/v1"
            ]
        );
        assert_eq!(
            references(store.patient_resources("Observation", "p1")),
            ["Observation/o1"]
        );
        assert!(store.patient_resources("Observation", "nobody").is_empty());
        assert!(store.patient_resources("Encounter", "p1").is_empty());

        // Moving o1 to p2 moves it in the index; the old version stays readable.
        store
            .upsert(json!({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p2"}}))
            .expect("update");
        assert!(store.patient_resources("Observation", "p1").is_empty());
        assert_eq!(
            references(store.patient_resources("Observation", "p2")),
            ["Observation/o1", "Observation/o2"]
        );
        assert_eq!(
            references(store.patient_compartment("p2")),
            [
                "Patient/p2",
                "Observation/o1",
                "Observation/o2",
                "Provenance/v1"
            ]
        );
        // A compartment without the Patient resource itself still lists what refers to it.
        store
            .upsert(json!({"resourceType": "Observation", "id": "o9", "subject": {"reference": "Patient/ghost"}}))
            .expect("valid");
        assert_eq!(
            references(store.patient_compartment("ghost")),
            ["Observation/o9"]
        );
    }

    #[test]
    fn export_snapshot_takes_each_resource_once_and_reserves_its_time() {
        let seconds = Arc::new(AtomicI64::new(1_700_000_000));
        let store = store_at(Arc::clone(&seconds));
        for resource in [
            json!({"resourceType": "Patient", "id": "p1"}),
            json!({"resourceType": "Patient", "id": "p2"}),
            json!({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}}),
            json!({"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/p2"}}),
            json!({"resourceType": "Provenance", "id": "v1", "target": [{"reference": "Patient/p1"}, {"reference": "Patient/p2"}]}),
            json!({"resourceType": "Practitioner", "id": "d1"}),
        ] {
            store.upsert(resource).expect("valid");
        }
        let references = |snapshot: &ExportSnapshot| -> Vec<(String, Vec<String>)> {
            snapshot
                .resources
                .iter()
                .map(|(resource_type, list)| {
                    (
                        resource_type.clone(),
                        list.iter().map(|resource| resource.reference()).collect(),
                    )
                })
                .collect()
        };
        let owned = |pairs: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
            pairs
                .iter()
                .map(|(resource_type, list)| {
                    (
                        (*resource_type).to_owned(),
                        list.iter().map(|r| (*r).to_owned()).collect(),
                    )
                })
                .collect()
        };

        // Whole types in creation order, in the order asked; types without resources left out.
        let everything = store.export_snapshot(
            ExportPopulation::Everything,
            ["Practitioner", "Observation", "Encounter"],
        );
        assert_eq!(
            references(&everything),
            owned(&[
                ("Practitioner", &["Practitioner/d1"]),
                ("Observation", &["Observation/o1", "Observation/o2"]),
            ])
        );
        assert_eq!(
            everything.transaction_time,
            OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("instant")
        );

        // Compartments patient by patient: a resource referring to both patients comes once,
        // an unknown patient adds nothing, and a type outside the compartment has nothing.
        let members = ["p2".to_owned(), "p1".to_owned(), "ghost".to_owned()];
        let group = store.export_snapshot(
            ExportPopulation::Patients(&members),
            ["Observation", "Patient", "Practitioner", "Provenance"],
        );
        assert_eq!(
            references(&group),
            owned(&[
                ("Observation", &["Observation/o2", "Observation/o1"]),
                ("Patient", &["Patient/p2", "Patient/p1"]),
                ("Provenance", &["Provenance/v1"]),
            ])
        );
        let all_patients =
            store.export_snapshot(ExportPopulation::AllPatients, ["Observation", "Patient"]);
        assert_eq!(
            references(&all_patients),
            owned(&[
                ("Observation", &["Observation/o1", "Observation/o2"]),
                ("Patient", &["Patient/p1", "Patient/p2"]),
            ])
        );

        // A write whose clock reads earlier than a snapshot (it read the clock before the
        // snapshot and committed after it) is still stamped at or after the transaction time,
        // so an export `_since` that time finds it.
        seconds.store(1_700_000_060, Ordering::SeqCst);
        let later = store.export_snapshot(ExportPopulation::Everything, ["Patient"]);
        seconds.store(1_700_000_030, Ordering::SeqCst);
        let written = store
            .upsert(json!({"resourceType": "Patient", "id": "p3"}))
            .expect("valid")
            .resource;
        assert_eq!(written.last_updated(), later.transaction_time);
    }

    #[test]
    fn concurrent_writers_and_readers() {
        let store = Arc::new(Store::new());
        let writers: Vec<_> = (0..4)
            .map(|thread| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for index in 0..200 {
                        store
                            .upsert(json!({"resourceType": "Observation", "id": format!("t{thread}-{index}"),
                                           "subject": {"reference": format!("Patient/p{thread}")}}))
                            .expect("valid");
                        assert!(store.read("Observation", &format!("t{thread}-{index}")).is_some());
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("writer thread");
        }
        assert_eq!(store.count("Observation"), 800);
        for thread in 0..4 {
            assert_eq!(
                store
                    .patient_resources("Observation", &format!("p{thread}"))
                    .len(),
                200
            );
        }
    }

    #[test]
    fn formats_instants_with_milliseconds() {
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_instant(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            truncate_to_millis(1_700_000_000_123_456),
            1_700_000_000_123_000
        );
        assert_eq!(truncate_to_millis(-1), -1000);
    }
}
