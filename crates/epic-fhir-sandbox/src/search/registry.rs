//! The search parameter registry: which parameters each resource type supports, their
//! kinds, and the JSON paths they index.
//!
//! Paths are dotted element names from the resource root; arrays are traversed at every
//! step, and a final `name[x]` stands for every choice element `nameDateTime`,
//! `namePeriod`, `nameCodeableConcept`... present in the resource. Which of those an
//! index can use is decided by the shape of each value (a date string, a Period object, a
//! CodeableConcept...), so `onset[x]` indexes `onsetDateTime` and `onsetPeriod` as dates
//! and quietly skips `onsetString`.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The kind of a search parameter, which decides how its values are parsed and matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParamKind {
    /// date, dateTime, instant and Period values, compared as time ranges with prefixes.
    Date,
    /// Coded values: code/boolean/string primitives, Coding, CodeableConcept, Identifier.
    Token,
    /// References to other resources.
    Reference,
    /// Case- and accent-insensitive text: strings, HumanName, Address.
    String,
    /// Quantity values with a number, a prefix and an optional `system|code` unit.
    Quantity,
}

impl ParamKind {
    /// The FHIR `SearchParamType` code, as a CapabilityStatement lists it.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Date => "date",
            ParamKind::Token => "token",
            ParamKind::Reference => "reference",
            ParamKind::String => "string",
            ParamKind::Quantity => "quantity",
        }
    }
}

/// One supported search parameter of a resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamDef {
    name: &'static str,
    kind: ParamKind,
    paths: &'static [&'static str],
    target: Option<&'static str>,
    doc: &'static str,
}

impl ParamDef {
    /// The parameter name as written in a query, e.g. `birthdate`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How the parameter's values are parsed and compared.
    pub fn kind(&self) -> ParamKind {
        self.kind
    }

    /// The element paths it indexes (empty for `_id` and `_lastUpdated`, which read the
    /// resource's id and store-assigned `meta.lastUpdated` directly).
    pub fn paths(&self) -> &'static [&'static str] {
        self.paths
    }

    /// For reference parameters restricted to one resource type (such as `patient`), that
    /// type: a bare id in a query means this type, and only references to it count.
    pub fn target(&self) -> Option<&'static str> {
        self.target
    }

    /// A one-line description for the CapabilityStatement.
    pub fn doc(&self) -> &'static str {
        self.doc
    }
}

/// Element paths of a parameter, as the registry tables write them.
type Paths = &'static [&'static str];

/// The one place a [`ParamDef`] is built; the helpers below name the kind.
const fn def(
    kind: ParamKind,
    name: &'static str,
    paths: Paths,
    target: Option<&'static str>,
    doc: &'static str,
) -> ParamDef {
    ParamDef {
        name,
        kind,
        paths,
        target,
        doc,
    }
}

const fn date(name: &'static str, paths: Paths, doc: &'static str) -> ParamDef {
    def(ParamKind::Date, name, paths, None, doc)
}

const fn token(name: &'static str, paths: Paths, doc: &'static str) -> ParamDef {
    def(ParamKind::Token, name, paths, None, doc)
}

const fn string(name: &'static str, paths: Paths, doc: &'static str) -> ParamDef {
    def(ParamKind::String, name, paths, None, doc)
}

const fn quantity(name: &'static str, paths: Paths, doc: &'static str) -> ParamDef {
    def(ParamKind::Quantity, name, paths, None, doc)
}

/// A reference parameter that may point at any resource type.
const fn reference(name: &'static str, paths: Paths, doc: &'static str) -> ParamDef {
    def(ParamKind::Reference, name, paths, None, doc)
}

/// A reference parameter that only ever means one resource type.
const fn reference_to(
    name: &'static str,
    paths: Paths,
    target: &'static str,
    doc: &'static str,
) -> ParamDef {
    def(ParamKind::Reference, name, paths, Some(target), doc)
}

/// `_id`: every type supports it; matched against the resource's logical id.
const ID: ParamDef = token("_id", &[], "Logical id of the resource");
/// `_lastUpdated`: every type supports it; matched against the store-assigned `meta.lastUpdated`.
const LAST_UPDATED: ParamDef = date(
    "_lastUpdated",
    &[],
    "When the resource version was last stored",
);

/// The `patient` parameter of resources whose `subject` may be a Patient (or a Group...).
const SUBJECT_PATIENT: ParamDef = reference_to(
    "patient",
    &["subject"],
    "Patient",
    "The patient the resource is about (subject)",
);
/// The `subject` parameter of the same resources.
const SUBJECT: ParamDef = reference("subject", &["subject"], "Who or what the resource is about");
/// The `patient` parameter of resources with a `patient` element.
const PATIENT: ParamDef = reference_to(
    "patient",
    &["patient"],
    "Patient",
    "The patient the resource is about",
);
/// The `encounter` parameter of resources with an `encounter` element.
const ENCOUNTER: ParamDef = reference_to(
    "encounter",
    &["encounter"],
    "Encounter",
    "The encounter the resource belongs to",
);
/// The `identifier` parameter of resources with an `identifier` element.
const IDENTIFIER: ParamDef = token(
    "identifier",
    &["identifier"],
    "A business identifier (system|value)",
);
/// The `status` parameter of resources with a `status` code.
const STATUS: ParamDef = token("status", &["status"], "The status code");
/// The `code` parameter of resources with a `code` CodeableConcept.
const CODE: ParamDef = token("code", &["code"], "The code (system|code, any coding)");
/// The `category` parameter of resources with a `category` CodeableConcept.
const CATEGORY: ParamDef = token(
    "category",
    &["category"],
    "The category (system|code, any coding)",
);

static COMMON: &[ParamDef] = &[ID, LAST_UPDATED];

static ALLERGY_INTOLERANCE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    CODE,
    CATEGORY,
    token(
        "clinical-status",
        &["clinicalStatus"],
        "active | inactive | resolved",
    ),
    token(
        "verification-status",
        &["verificationStatus"],
        "unconfirmed | confirmed | refuted | entered-in-error",
    ),
    token(
        "criticality",
        &["criticality"],
        "low | high | unable-to-assess",
    ),
    token("type", &["type"], "allergy | intolerance"),
    date(
        "date",
        &["recordedDate"],
        "Date the allergy was first recorded",
    ),
];

static APPOINTMENT: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    reference_to(
        "patient",
        &["participant.actor"],
        "Patient",
        "A patient taking part in the appointment",
    ),
    reference(
        "actor",
        &["participant.actor"],
        "Any participant of the appointment",
    ),
    reference_to(
        "practitioner",
        &["participant.actor"],
        "Practitioner",
        "A practitioner taking part",
    ),
    reference_to(
        "location",
        &["participant.actor"],
        "Location",
        "The location of the appointment",
    ),
    date("date", &["start"], "When the appointment starts"),
    STATUS,
    token(
        "service-type",
        &["serviceType"],
        "The specific service to be performed",
    ),
    token(
        "appointment-type",
        &["appointmentType"],
        "The style of appointment or patient",
    ),
    IDENTIFIER,
];

static CARE_PLAN: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CATEGORY,
    date("date", &["period"], "Time period the plan covers"),
    STATUS,
    token("intent", &["intent"], "proposal | plan | order | option"),
    ENCOUNTER,
];

static CARE_TEAM: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    STATUS,
    CATEGORY,
    date("date", &["period"], "Time period the team covers"),
];

static CLAIM: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    STATUS,
    token(
        "use",
        &["use"],
        "claim | preauthorization | predetermination",
    ),
    date("created", &["created"], "The creation date of the claim"),
    reference(
        "provider",
        &["provider"],
        "The provider responsible for the claim",
    ),
    reference_to(
        "encounter",
        &["item.encounter"],
        "Encounter",
        "Encounters the claim items refer to",
    ),
    IDENTIFIER,
];

static COMMUNICATION: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CATEGORY,
    STATUS,
    date("sent", &["sent"], "When the communication was sent"),
    ENCOUNTER,
];

static CONDITION: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CATEGORY,
    token(
        "clinical-status",
        &["clinicalStatus"],
        "active | recurrence | relapse | inactive | remission | resolved",
    ),
    token(
        "verification-status",
        &["verificationStatus"],
        "unconfirmed | provisional | differential | confirmed...",
    ),
    CODE,
    date(
        "onset-date",
        &["onset[x]"],
        "Date the condition started (onsetDateTime or onsetPeriod)",
    ),
    date(
        "abatement-date",
        &["abatement[x]"],
        "Date the condition resolved",
    ),
    date(
        "recorded-date",
        &["recordedDate"],
        "Date the condition was first recorded",
    ),
    ENCOUNTER,
];

static CONSENT: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    STATUS,
    CATEGORY,
    date("date", &["dateTime"], "When the consent was agreed to"),
];

static COVERAGE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    reference_to(
        "patient",
        &["beneficiary"],
        "Patient",
        "The patient covered (beneficiary)",
    ),
    reference_to(
        "beneficiary",
        &["beneficiary"],
        "Patient",
        "The covered party",
    ),
    reference(
        "subscriber",
        &["subscriber"],
        "The subscriber to the policy",
    ),
    reference("payor", &["payor"], "The issuer of the coverage"),
    STATUS,
    token("type", &["type"], "The kind of coverage"),
    IDENTIFIER,
];

static DEVICE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    token("type", &["type"], "The type of the device"),
    STATUS,
    IDENTIFIER,
];

static DIAGNOSTIC_REPORT: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CODE,
    CATEGORY,
    date(
        "date",
        &["effective[x]"],
        "The clinically relevant time of the report",
    ),
    date("issued", &["issued"], "When the report was released"),
    STATUS,
    ENCOUNTER,
    reference_to(
        "result",
        &["result"],
        "Observation",
        "The observations of the report",
    ),
    reference(
        "performer",
        &["performer"],
        "Who is responsible for the report",
    ),
];

static DOCUMENT_REFERENCE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CATEGORY,
    token("type", &["type"], "The kind of document"),
    date("date", &["date"], "When the document reference was created"),
    date(
        "period",
        &["context.period"],
        "Time of service being documented",
    ),
    STATUS,
    reference_to(
        "encounter",
        &["context.encounter"],
        "Encounter",
        "The encounter the document belongs to",
    ),
    IDENTIFIER,
];

static ENCOUNTER_PARAMS: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    date(
        "date",
        &["period"],
        "A date within the period the encounter lasted",
    ),
    STATUS,
    token(
        "class",
        &["class"],
        "Classification of the encounter (e.g. AMB, EMER, IMP)",
    ),
    token("type", &["type"], "The specific type of encounter"),
    reference(
        "participant",
        &["participant.individual"],
        "Persons involved in the encounter",
    ),
    reference_to(
        "practitioner",
        &["participant.individual"],
        "Practitioner",
        "Practitioners involved",
    ),
    reference(
        "service-provider",
        &["serviceProvider"],
        "The organization responsible",
    ),
    token(
        "reason-code",
        &["reasonCode"],
        "Coded reason the encounter takes place",
    ),
    IDENTIFIER,
];

static EPISODE_OF_CARE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    token(
        "type",
        &["type"],
        "The type of the episode (Epic requires it with patient)",
    ),
    STATUS,
    date("date", &["period"], "When the episode ran"),
    reference_to(
        "organization",
        &["managingOrganization"],
        "Organization",
        "The organization managing the episode",
    ),
    reference_to(
        "care-manager",
        &["careManager"],
        "Practitioner",
        "The care manager of the episode",
    ),
    reference_to(
        "condition",
        &["diagnosis.condition"],
        "Condition",
        "A condition the episode is for",
    ),
    IDENTIFIER,
];

static EXPLANATION_OF_BENEFIT: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    STATUS,
    date("created", &["created"], "The creation date"),
    reference_to("claim", &["claim"], "Claim", "The claim this explains"),
    reference("provider", &["provider"], "The provider responsible"),
    reference_to(
        "coverage",
        &["insurance.coverage"],
        "Coverage",
        "The plan under which the claim was adjudicated",
    ),
    IDENTIFIER,
];

static FAMILY_MEMBER_HISTORY: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    STATUS,
    token(
        "code",
        &["condition.code"],
        "A condition of the family member",
    ),
    token(
        "relationship",
        &["relationship"],
        "The relationship to the patient",
    ),
];

static GOAL: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    token(
        "lifecycle-status",
        &["lifecycleStatus"],
        "proposed | planned | accepted | active | completed...",
    ),
    token(
        "achievement-status",
        &["achievementStatus"],
        "in-progress | improving | achieved...",
    ),
    CATEGORY,
    date("start-date", &["start[x]"], "When the goal is pursued from"),
];

static GROUP: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    string("name", &["name"], "A label for the group"),
    token(
        "type",
        &["type"],
        "person | animal | practitioner | device | medication | substance",
    ),
    token("code", &["code"], "The kind of resources in the group"),
    token(
        "actual",
        &["actual"],
        "Whether the group lists actual members (true | false)",
    ),
    reference("member", &["member.entity"], "A member of the group"),
    IDENTIFIER,
];

static IMAGING_STUDY: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    date("started", &["started"], "When the study was started"),
    STATUS,
    ENCOUNTER,
    token("modality", &["series.modality"], "The modality of a series"),
    IDENTIFIER,
];

static IMMUNIZATION: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    date(
        "date",
        &["occurrence[x]"],
        "When the vaccine was administered",
    ),
    STATUS,
    token(
        "vaccine-code",
        &["vaccineCode"],
        "The vaccine product administered",
    ),
    IDENTIFIER,
];

static LIST: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CODE,
    STATUS,
    date("date", &["date"], "When the list was prepared"),
];

static LOCATION: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    string(
        "name",
        &["name", "alias"],
        "A name or alias of the location",
    ),
    STATUS,
    token("type", &["type"], "The type of the location"),
    string("address", &["address"], "Any part of the address"),
    reference_to(
        "organization",
        &["managingOrganization"],
        "Organization",
        "The managing organization",
    ),
    IDENTIFIER,
];

static MEDICATION: &[ParamDef] = &[ID, LAST_UPDATED, CODE, STATUS, IDENTIFIER];

static MEDICATION_ADMINISTRATION: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    STATUS,
    token("code", &["medication[x]"], "The medication code"),
    date(
        "effective-time",
        &["effective[x]"],
        "When the medication was administered",
    ),
];

static MEDICATION_DISPENSE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    STATUS,
    token("code", &["medication[x]"], "The medication code"),
    date(
        "whenhandedover",
        &["whenHandedOver"],
        "When the medication was handed over",
    ),
];

static MEDICATION_REQUEST: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    STATUS,
    token(
        "intent",
        &["intent"],
        "proposal | plan | order | original-order...",
    ),
    date(
        "authoredon",
        &["authoredOn"],
        "When the prescription was written",
    ),
    token(
        "code",
        &["medication[x]"],
        "The medication code (medicationCodeableConcept)",
    ),
    reference_to(
        "medication",
        &["medication[x]"],
        "Medication",
        "The medication (medicationReference)",
    ),
    CATEGORY,
    reference("requester", &["requester"], "Who asked for the medication"),
    ENCOUNTER,
    IDENTIFIER,
];

static MEDICATION_STATEMENT: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    STATUS,
    token("code", &["medication[x]"], "The medication code"),
    CATEGORY,
    date(
        "effective",
        &["effective[x]"],
        "When the medication was taken",
    ),
];

static NUTRITION_ORDER: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    STATUS,
    date("datetime", &["dateTime"], "When the order was made"),
    ENCOUNTER,
];

static OBSERVATION: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CATEGORY,
    CODE,
    date(
        "date",
        &["effective[x]"],
        "The clinically relevant time of the observation",
    ),
    STATUS,
    ENCOUNTER,
    quantity(
        "value-quantity",
        &["valueQuantity"],
        "The value (valueQuantity), with prefixes and system|code units",
    ),
    token(
        "value-concept",
        &["valueCodeableConcept"],
        "The coded value (valueCodeableConcept)",
    ),
    token(
        "component-code",
        &["component.code"],
        "The code of a component",
    ),
    date("issued", &["issued"], "When the result was made available"),
    reference("performer", &["performer"], "Who performed the observation"),
    reference("based-on", &["basedOn"], "The plan or order this fulfils"),
];

static ORGANIZATION: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    string(
        "name",
        &["name", "alias"],
        "A name or alias of the organization",
    ),
    token("type", &["type"], "The kind of organization"),
    token(
        "active",
        &["active"],
        "Whether the record is in active use (true | false)",
    ),
    string("address", &["address"], "Any part of the address"),
    string("address-city", &["address.city"], "The city of the address"),
    reference_to(
        "partof",
        &["partOf"],
        "Organization",
        "The organization this is part of",
    ),
    IDENTIFIER,
];

static PATIENT_PARAMS: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    IDENTIFIER,
    string("family", &["name.family"], "A portion of the family name"),
    string("given", &["name.given"], "A portion of a given name"),
    string(
        "name",
        &["name"],
        "A portion of any name part: family, given, prefix, suffix or text",
    ),
    date("birthdate", &["birthDate"], "The date of birth"),
    token("gender", &["gender"], "male | female | other | unknown"),
    token(
        "active",
        &["active"],
        "Whether the record is in active use (true | false)",
    ),
    string("address", &["address"], "Any part of the address"),
    string("address-city", &["address.city"], "The city of the address"),
    string(
        "address-state",
        &["address.state"],
        "The state of the address",
    ),
    string(
        "address-postalcode",
        &["address.postalCode"],
        "The postal code of the address",
    ),
    reference(
        "general-practitioner",
        &["generalPractitioner"],
        "The patient's nominated primary care provider",
    ),
    reference_to(
        "organization",
        &["managingOrganization"],
        "Organization",
        "The custodian organization",
    ),
];

static PRACTITIONER: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    IDENTIFIER,
    string("name", &["name"], "A portion of any name part"),
    string("family", &["name.family"], "A portion of the family name"),
    string("given", &["name.given"], "A portion of a given name"),
    token("gender", &["gender"], "male | female | other | unknown"),
    token(
        "active",
        &["active"],
        "Whether the record is in active use (true | false)",
    ),
    string("address", &["address"], "Any part of the address"),
];

static PRACTITIONER_ROLE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    reference_to(
        "practitioner",
        &["practitioner"],
        "Practitioner",
        "The practitioner in the role",
    ),
    reference_to(
        "organization",
        &["organization"],
        "Organization",
        "The organization of the role",
    ),
    reference_to(
        "location",
        &["location"],
        "Location",
        "Where the role is performed",
    ),
    token("role", &["code"], "The role the practitioner performs"),
    token("specialty", &["specialty"], "The practitioner's specialty"),
    token(
        "active",
        &["active"],
        "Whether the role is in active use (true | false)",
    ),
    IDENTIFIER,
];

static PROCEDURE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CODE,
    CATEGORY,
    date(
        "date",
        &["performed[x]"],
        "When the procedure was performed",
    ),
    STATUS,
    ENCOUNTER,
    reference(
        "performer",
        &["performer.actor"],
        "Who performed the procedure",
    ),
];

static PROVENANCE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    reference(
        "target",
        &["target"],
        "The resources this provenance is about",
    ),
    reference_to(
        "patient",
        &["target"],
        "Patient",
        "A patient the provenance is about (target)",
    ),
    date("recorded", &["recorded"], "When the activity was recorded"),
    reference("agent", &["agent.who"], "Who participated in the activity"),
];

static QUESTIONNAIRE_RESPONSE: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    STATUS,
    date("authored", &["authored"], "When the answers were gathered"),
    ENCOUNTER,
];

static RELATED_PERSON: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    PATIENT,
    string("name", &["name"], "A portion of any name part"),
    token(
        "relationship",
        &["relationship"],
        "The relationship to the patient",
    ),
    IDENTIFIER,
];

static SERVICE_REQUEST: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    CODE,
    STATUS,
    token(
        "intent",
        &["intent"],
        "proposal | plan | directive | order...",
    ),
    CATEGORY,
    date("authored", &["authoredOn"], "When the request was signed"),
    reference("requester", &["requester"], "Who asked for the service"),
    ENCOUNTER,
];

static SPECIMEN: &[ParamDef] = &[
    ID,
    LAST_UPDATED,
    SUBJECT_PATIENT,
    SUBJECT,
    token("type", &["type"], "The specimen type"),
    STATUS,
    date(
        "collected",
        &["collection.collected[x]"],
        "When the specimen was collected",
    ),
];

/// Every resource type with parameters beyond `_id` and `_lastUpdated`, sorted by name.
static REGISTRY: &[(&str, &[ParamDef])] = &[
    ("AllergyIntolerance", ALLERGY_INTOLERANCE),
    ("Appointment", APPOINTMENT),
    ("CarePlan", CARE_PLAN),
    ("CareTeam", CARE_TEAM),
    ("Claim", CLAIM),
    ("Communication", COMMUNICATION),
    ("Condition", CONDITION),
    ("Consent", CONSENT),
    ("Coverage", COVERAGE),
    ("Device", DEVICE),
    ("DiagnosticReport", DIAGNOSTIC_REPORT),
    ("DocumentReference", DOCUMENT_REFERENCE),
    ("Encounter", ENCOUNTER_PARAMS),
    ("EpisodeOfCare", EPISODE_OF_CARE),
    ("ExplanationOfBenefit", EXPLANATION_OF_BENEFIT),
    ("FamilyMemberHistory", FAMILY_MEMBER_HISTORY),
    ("Goal", GOAL),
    ("Group", GROUP),
    ("ImagingStudy", IMAGING_STUDY),
    ("Immunization", IMMUNIZATION),
    ("List", LIST),
    ("Location", LOCATION),
    ("Medication", MEDICATION),
    ("MedicationAdministration", MEDICATION_ADMINISTRATION),
    ("MedicationDispense", MEDICATION_DISPENSE),
    ("MedicationRequest", MEDICATION_REQUEST),
    ("MedicationStatement", MEDICATION_STATEMENT),
    ("NutritionOrder", NUTRITION_ORDER),
    ("Observation", OBSERVATION),
    ("Organization", ORGANIZATION),
    ("Patient", PATIENT_PARAMS),
    ("Practitioner", PRACTITIONER),
    ("PractitionerRole", PRACTITIONER_ROLE),
    ("Procedure", PROCEDURE),
    ("Provenance", PROVENANCE),
    ("QuestionnaireResponse", QUESTIONNAIRE_RESPONSE),
    ("RelatedPerson", RELATED_PERSON),
    ("ServiceRequest", SERVICE_REQUEST),
    ("Specimen", SPECIMEN),
];

/// The search parameters a resource type supports.
///
/// Every type, including types the registry does not describe, supports `_id` and
/// `_lastUpdated`; those two always come first.
pub fn supported_params(resource_type: &str) -> &'static [ParamDef] {
    REGISTRY
        .binary_search_by(|(name, _)| (*name).cmp(resource_type))
        .map_or(COMMON, |index| REGISTRY[index].1)
}

/// Looks up one parameter of a resource type by name.
pub fn find_param(resource_type: &str, name: &str) -> Option<&'static ParamDef> {
    supported_params(resource_type)
        .iter()
        .find(|param| param.name == name)
}

/// The resource types with parameters beyond `_id` and `_lastUpdated`, sorted by name.
pub fn described_types() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|(name, _)| *name)
}

/// How one resource type's parameters map onto index slots.
///
/// Parameters that index the same paths with the same kind (`patient` and `subject` on
/// Observation, `actor` and `practitioner` on Appointment) share one slot, so each value is
/// extracted and stored once; a target-restricted parameter filters the shared values at
/// query time.
#[derive(Debug)]
pub(crate) struct TypeSchema {
    /// The parameters, in registry order.
    pub(crate) params: &'static [ParamDef],
    /// For each parameter, its slot; `None` for `_id` and `_lastUpdated`.
    pub(crate) param_slots: Vec<Option<u8>>,
    /// The kind and paths of each slot.
    pub(crate) slots: Vec<SlotDef>,
    /// The slot of the `patient` reference parameter, whose Patient references feed the
    /// per-type patient index and define the patient compartment.
    pub(crate) patient_slot: Option<u8>,
}

/// What one index slot holds.
#[derive(Debug)]
pub(crate) struct SlotDef {
    pub(crate) kind: ParamKind,
    pub(crate) paths: &'static [&'static str],
    /// Each path split on `.`, computed once so extraction does not re-split per resource.
    pub(crate) segments: Vec<Vec<&'static str>>,
}

impl TypeSchema {
    fn build(params: &'static [ParamDef]) -> Self {
        let mut slots: Vec<SlotDef> = Vec::new();
        let mut param_slots = Vec::with_capacity(params.len());
        for param in params {
            if param.paths.is_empty() {
                param_slots.push(None);
                continue;
            }
            let existing = slots
                .iter()
                .position(|slot| slot.kind == param.kind && slot.paths == param.paths);
            let index = existing.unwrap_or_else(|| {
                slots.push(SlotDef {
                    kind: param.kind,
                    paths: param.paths,
                    segments: param
                        .paths
                        .iter()
                        .map(|path| path.split('.').collect())
                        .collect(),
                });
                slots.len() - 1
            });
            // The registry is static and small; no type comes near 256 slots.
            param_slots.push(u8::try_from(index).ok());
        }
        let patient_slot = params
            .iter()
            .zip(&param_slots)
            .find(|(param, _)| param.name == "patient" && param.kind == ParamKind::Reference)
            .and_then(|(_, slot)| *slot);
        TypeSchema {
            params,
            param_slots,
            slots,
            patient_slot,
        }
    }

    /// The slot of the parameter at `param_index` in [`TypeSchema::params`].
    pub(crate) fn slot_of(&self, param_index: usize) -> Option<u8> {
        self.param_slots.get(param_index).copied().flatten()
    }

    /// Finds a parameter by name, with its index.
    pub(crate) fn param(&self, name: &str) -> Option<(usize, &'static ParamDef)> {
        self.params
            .iter()
            .enumerate()
            .find(|(_, param)| param.name == name)
    }
}

/// The schema of a resource type (types outside the registry get the `_id`/`_lastUpdated` one).
pub(crate) fn schema(resource_type: &str) -> &'static TypeSchema {
    static SCHEMAS: OnceLock<(HashMap<&'static str, TypeSchema>, TypeSchema)> = OnceLock::new();
    let (described, common) = SCHEMAS.get_or_init(|| {
        let described = REGISTRY
            .iter()
            .map(|(name, params)| (*name, TypeSchema::build(params)))
            .collect();
        (described, TypeSchema::build(COMMON))
    });
    described.get(resource_type).unwrap_or(common)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_sorted_for_binary_search() {
        assert!(REGISTRY.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn every_type_starts_with_id_and_last_updated() {
        for (name, params) in REGISTRY {
            assert_eq!(params[0].name, "_id", "{name}");
            assert_eq!(params[1].name, "_lastUpdated", "{name}");
            let mut names: Vec<&str> = params.iter().map(|param| param.name).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "{name} declares a parameter twice");
        }
    }

    #[test]
    fn unknown_types_support_the_common_parameters() {
        let names: Vec<&str> = supported_params("Basic")
            .iter()
            .map(ParamDef::name)
            .collect();
        assert_eq!(names, ["_id", "_lastUpdated"]);
        assert!(find_param("Basic", "code").is_none());
    }

    #[test]
    fn required_parameters_are_declared() {
        let required: &[(&str, &[&str])] = &[
            (
                "Patient",
                &[
                    "_id",
                    "identifier",
                    "family",
                    "given",
                    "name",
                    "birthdate",
                    "gender",
                ],
            ),
            (
                "Observation",
                &["patient", "subject", "category", "code", "date", "status"],
            ),
            (
                "Condition",
                &[
                    "patient",
                    "subject",
                    "category",
                    "clinical-status",
                    "code",
                    "onset-date",
                ],
            ),
            (
                "MedicationRequest",
                &["patient", "status", "intent", "authoredon"],
            ),
            ("Encounter", &["patient", "date", "status", "class"]),
            ("Appointment", &["patient", "date", "status"]),
            ("Group", &["_id", "name", "type"]),
            (
                "Procedure",
                &["patient", "subject", "code", "date", "status"],
            ),
            ("Immunization", &["patient", "date", "status"]),
            ("AllergyIntolerance", &["patient", "code"]),
            (
                "DiagnosticReport",
                &["patient", "subject", "code", "date", "status"],
            ),
            ("CarePlan", &["patient", "subject", "date", "status"]),
            ("Goal", &["patient", "subject"]),
            ("Claim", &["patient"]),
            ("ExplanationOfBenefit", &["patient"]),
            ("ImagingStudy", &["patient", "subject"]),
            (
                "DocumentReference",
                &["patient", "subject", "date", "status"],
            ),
            ("Provenance", &["target", "patient"]),
            ("Coverage", &["beneficiary", "patient"]),
        ];
        for (resource_type, names) in required {
            for name in *names {
                assert!(
                    find_param(resource_type, name).is_some(),
                    "{resource_type}.{name}"
                );
            }
            assert!(find_param(resource_type, "_lastUpdated").is_some());
        }
    }

    #[test]
    fn parameters_on_the_same_paths_share_a_slot() {
        let observation = schema("Observation");
        let (patient, _) = observation.param("patient").expect("patient");
        let (subject, _) = observation.param("subject").expect("subject");
        assert_eq!(observation.slot_of(patient), observation.slot_of(subject));
        assert_eq!(observation.patient_slot, observation.slot_of(patient));
        let (code, _) = observation.param("code").expect("code");
        assert_ne!(observation.slot_of(code), observation.slot_of(patient));
        // Same path, different kind: medication[x] as a token and as a reference.
        let request = schema("MedicationRequest");
        let (code, _) = request.param("code").expect("code");
        let (medication, _) = request.param("medication").expect("medication");
        assert_ne!(request.slot_of(code), request.slot_of(medication));
    }

    #[test]
    fn patient_compartment_slots() {
        assert!(schema("Patient").patient_slot.is_none());
        assert!(schema("Group").patient_slot.is_none());
        for resource_type in [
            "Observation",
            "Immunization",
            "Provenance",
            "Coverage",
            "Appointment",
        ] {
            assert!(
                schema(resource_type).patient_slot.is_some(),
                "{resource_type}"
            );
        }
    }
}
