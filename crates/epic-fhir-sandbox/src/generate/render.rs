//! Turns a patient's [`Plan`] into FHIR resources: the Patient, its Encounters with their vital
//! signs, labs, immunizations, diagnoses and procedures, then problems, prescriptions,
//! allergies, appointments and home-monitoring readings.
//!
//! The plan fixes what exists; this module adds when it happened (clinic hours, weekdays,
//! local time zones) and what was measured (values that drift with age and disease).

use serde_json::{Map, Value, json};
use time::{Date, Duration, OffsetDateTime};

use super::World;
use super::catalog::{
    Code, Cond, EPIC_CSN, EPIC_MRN, INTERPRETATION, LOINC, Lab, OBSERVATION_CATEGORY, Proc, SNOMED,
    Smoking, Specialty, Vaccine, VaccineRoute,
};
use super::fhir::{
    concept, concept1, condition_concept, quantity, quantity_labelled, reference, reference_to,
    round, status_concept,
};
use super::people::{Directory, Named, REGIONS};
use super::plan::{
    Episode, LabPolicy, MedPlan, MedStatus, Monitoring, OnsetStyle, Plan, Problem, ProblemStatus,
    Visit, VisitKind,
};
use super::rng::Rng;
use super::timefmt::{self, Zone};

/// What the caller needs to know about a rendered patient (for Groups and the summary).
#[derive(Debug, Clone)]
pub(super) struct Rendered {
    pub(super) id: String,
    pub(super) display: String,
    pub(super) age: i32,
    pub(super) diabetic: bool,
}

/// Renders one patient's plan, emitting every resource through the world's output.
pub(super) fn render(
    plan: &Plan,
    rng: &mut Rng,
    world: &mut World<'_>,
    directory: &Directory,
) -> (Rendered, History) {
    let zone = REGIONS
        .get(plan.person.region)
        .map_or(Zone::Central, |r| r.zone);
    let display = plan.person.display_name();
    let subject = reference_to("Patient", &plan.person.id, &display);
    let mut writer = Writer {
        plan,
        rng,
        world,
        directory,
        zone,
        subject,
        labs: Vec::new(),
        prescriptions: Vec::new(),
    };
    writer.patient();
    let problem_ids: Vec<String> = plan
        .problems
        .iter()
        .map(|_| writer.world.ids.fresh(writer.rng, "Condition"))
        .collect();
    let records = writer.visits(&problem_ids);
    writer.problems(&records, &problem_ids);
    writer.other_medications(&records);
    writer.allergies(&records);
    if let Some(monitoring) = plan.monitoring {
        writer.monitoring(monitoring);
    }
    let today = writer.world.clock.today;
    let history = History {
        subject: writer.subject.clone(),
        zone,
        visits: records,
        labs: std::mem::take(&mut writer.labs),
        prescriptions: std::mem::take(&mut writer.prescriptions),
        problems: plan
            .problems
            .iter()
            .zip(&problem_ids)
            .map(|(p, id)| (id.clone(), p.cond, p.onset, p.active_on(today)))
            .collect(),
        monitoring: plan.monitoring.map(|m| m.start),
        pcp: plan.person.pcp,
        region: plan.person.region,
    };
    (
        Rendered {
            id: plan.person.id.clone(),
            display,
            age: timefmt::age_on(plan.person.birth, today),
            diabetic: plan.has(Cond::Diabetes2, today),
        },
        history,
    )
}

/// What the second pass ([`super::records`]) needs of a rendered patient: the records it
/// derives documents, reports, orders, specimens, dispenses, devices and episodes from.
#[derive(Debug)]
pub(super) struct History {
    pub(super) subject: Value,
    pub(super) zone: Zone,
    pub(super) visits: Vec<VisitRecord>,
    pub(super) labs: Vec<LabResult>,
    pub(super) prescriptions: Vec<Prescription>,
    /// Problem-list entries: Condition id, condition, onset, active today.
    pub(super) problems: Vec<(String, Cond, Date, bool)>,
    /// The start of home monitoring, for a patient who has it.
    pub(super) monitoring: Option<Date>,
    /// Directory index of the primary care practitioner.
    pub(super) pcp: usize,
    pub(super) region: usize,
}

/// One lab result Observation as written.
#[derive(Debug, Clone)]
pub(super) struct LabResult {
    pub(super) encounter: String,
    pub(super) practitioner: usize,
    pub(super) observation: String,
    pub(super) lab: Lab,
    pub(super) draw: OffsetDateTime,
    pub(super) issued: OffsetDateTime,
}

/// One MedicationRequest as written.
#[derive(Debug, Clone)]
pub(super) struct Prescription {
    pub(super) id: String,
    pub(super) med: super::catalog::Med,
    pub(super) authored: OffsetDateTime,
    pub(super) status: &'static str,
    pub(super) requester: usize,
}

/// A visit after rendering: when it happened, its Encounter and who saw the patient.
#[derive(Debug, Clone)]
pub(super) struct VisitRecord {
    pub(super) date: Date,
    pub(super) kind: VisitKind,
    pub(super) encounter: String,
    pub(super) start: OffsetDateTime,
    pub(super) end: Option<OffsetDateTime>,
    pub(super) practitioner: usize,
}

/// How unwell the patient is at a visit, which shifts vital signs and some labs.
#[derive(Debug, Clone, Copy, Default)]
struct Acuity {
    fever: bool,
    respiratory: bool,
    infection: bool,
    distress: bool,
}

impl Acuity {
    fn of(cond: Option<Cond>, rng: &mut Rng) -> Self {
        let Some(cond) = cond else {
            return Self::default();
        };
        let fever = match cond {
            Cond::StrepThroat
            | Cond::OtitisMedia
            | Cond::Influenza
            | Cond::Covid19
            | Cond::Pneumonia
            | Cond::Cellulitis => true,
            Cond::AcuteBronchitis | Cond::ViralSinusitis => rng.chance(0.4),
            Cond::UrinaryInfection => rng.chance(0.25),
            _ => false,
        };
        let respiratory = matches!(
            cond,
            Cond::Pneumonia
                | Cond::AcuteBronchitis
                | Cond::AsthmaExacerbation
                | Cond::Influenza
                | Cond::Covid19
                | Cond::HeartFailure
                | Cond::Copd
        );
        let infection = fever || matches!(cond, Cond::UrinaryInfection | Cond::Cellulitis);
        let distress = matches!(
            cond,
            Cond::Pneumonia | Cond::HeartFailure | Cond::AsthmaExacerbation | Cond::AnkleSprain
        );
        Self {
            fever,
            respiratory,
            infection,
            distress,
        }
    }
}

/// One set of vital signs.
#[derive(Debug, Clone, Copy)]
struct Vitals {
    systolic: f64,
    diastolic: f64,
    heart_rate: f64,
    respiratory_rate: f64,
    temperature: f64,
    spo2: f64,
    weight: f64,
    height: f64,
}

/// How an Observation's clinically relevant time is written.
#[derive(Debug, Clone, Copy)]
enum Effective {
    /// A full instant in the clinic's local offset.
    Local(OffsetDateTime),
    /// A full instant in UTC (`Z`).
    Utc(OffsetDateTime),
    /// A date only.
    Day(Date),
    /// A short period.
    Period(OffsetDateTime, OffsetDateTime),
}

impl Effective {
    fn instant(self) -> OffsetDateTime {
        match self {
            Self::Local(t) | Self::Utc(t) | Self::Period(t, _) => t,
            Self::Day(d) => d.midnight().assume_utc(),
        }
    }

    fn write(self, resource: &mut Map<String, Value>) {
        match self {
            Self::Local(t) => {
                resource.insert("effectiveDateTime".into(), json!(timefmt::instant(t)));
            }
            Self::Utc(t) => {
                resource.insert("effectiveDateTime".into(), json!(timefmt::utc(t)));
            }
            Self::Day(d) => {
                resource.insert("effectiveDateTime".into(), json!(timefmt::date(d)));
            }
            Self::Period(start, end) => {
                resource.insert(
                    "effectivePeriod".into(),
                    json!({ "start": timefmt::instant(start), "end": timefmt::instant(end) }),
                );
            }
        }
    }
}

/// Observation categories the generator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    VitalSigns,
    Laboratory,
    SocialHistory,
}

impl Category {
    fn concept(self) -> Value {
        let (code, display) = match self {
            Self::VitalSigns => ("vital-signs", "Vital Signs"),
            Self::Laboratory => ("laboratory", "Laboratory"),
            Self::SocialHistory => ("social-history", "Social History"),
        };
        json!({
            "coding": [{ "system": OBSERVATION_CATEGORY, "code": code, "display": display }],
            "text": display,
        })
    }
}

/// An Observation's value.
#[derive(Debug, Clone)]
enum ObsValue {
    Quantity(Value),
    /// Blood pressure: systolic and diastolic components.
    Pressure(f64, f64),
    Concept(Code),
    Text(&'static str),
}

/// Everything that varies between Observations.
struct ObsSpec {
    category: Category,
    loinc: (&'static str, &'static str),
    text: &'static str,
    effective: Effective,
    value: ObsValue,
    encounter: Option<String>,
    /// Who took the measurement (a Practitioner or, for home readings, the Patient).
    performer: Option<Value>,
    interpretation: Option<(&'static str, &'static str)>,
    range: Option<Value>,
    /// Time from the measurement to its result (minutes for vitals, hours for labs).
    turnaround: Duration,
    preliminary: bool,
}

struct Writer<'a, 'w> {
    plan: &'a Plan,
    rng: &'a mut Rng,
    world: &'a mut World<'w>,
    directory: &'a Directory,
    zone: Zone,
    subject: Value,
    /// Every lab result written, for the reports, orders and specimens of the second pass.
    labs: Vec<LabResult>,
    /// Every prescription written, for the dispenses of the second pass.
    prescriptions: Vec<Prescription>,
}

impl Writer<'_, '_> {
    fn fresh_id(&mut self, resource_type: &str) -> String {
        self.world.ids.fresh(self.rng, resource_type)
    }

    fn practitioner_ref(&self, index: usize) -> Value {
        let p = &self.directory.practitioner(index).who;
        reference_to("Practitioner", &p.id, &p.display)
    }

    fn org_ref(org: &Named) -> Value {
        reference_to("Organization", &org.id, &org.display)
    }

    /// `meta` with a lastUpdated shortly after `at`, never after the generation anchor.
    fn meta_after(&mut self, at: OffsetDateTime, max_minutes: i64) -> Value {
        json!({ "lastUpdated": self.world.clock.last_updated_after(self.rng, at, max_minutes) })
    }

    fn patient(&mut self) {
        let person = &self.plan.person;
        let today = self.world.clock.today;
        let mut telecom = vec![json!({ "system": "phone", "value": person.phone, "use": "home" })];
        if self.rng.chance(0.4) {
            telecom.push(json!({
                "system": "phone",
                "value": person.address.phone(self.rng),
                "use": "mobile",
            }));
        }
        if let Some(email) = &person.email {
            telecom.push(json!({ "system": "email", "value": email }));
        }
        let moved_in = timefmt::add_days(
            self.plan.record_start.max(person.birth),
            -self.rng.range(0, 2000),
        )
        .max(person.birth);
        let mut address = person.address.to_json("home");
        address["period"] = json!({ "start": timefmt::date(moved_in) });
        let pcp = self.directory.practitioner(person.pcp);
        let mut patient = json!({
            "resourceType": "Patient",
            "id": person.id,
            "meta": { "lastUpdated": self.world.clock.last_updated_before(self.rng, 180) },
            "extension": [{
                "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                "valueCode": if person.female { "F" } else { "M" },
            }],
            "identifier": [{
                "use": "usual",
                "type": {
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "code": "MR",
                        "display": "Medical record number",
                    }],
                    "text": "EPI",
                },
                "system": EPIC_MRN,
                "value": person.mrn,
            }],
            "active": true,
            "name": [{
                "use": "official",
                "text": person.display_name(),
                "family": person.family,
                "given": person.given,
            }],
            "telecom": telecom,
            "gender": if person.female { "female" } else { "male" },
            "birthDate": timefmt::date(person.birth),
            "address": [address],
            "communication": [{
                "language": {
                    "coding": [{
                        "system": "urn:ietf:bcp:47",
                        "code": person.language.0,
                        "display": person.language.1,
                    }],
                    "text": person.language.1,
                },
                "preferred": true,
            }],
            "generalPractitioner": [reference_to("Practitioner", &pcp.who.id, &pcp.who.display)],
            "managingOrganization": Self::org_ref(self.directory.clinic(person.region)),
        });
        if timefmt::age_on(person.birth, today) >= 18 {
            let age = timefmt::age_on(person.birth, today);
            let options: &[((&str, &str), u32)] = &[
                (("M", "Married"), 50),
                (("S", "Never Married"), 30),
                (("D", "Divorced"), 12),
                (("W", "Widowed"), if age > 60 { 15 } else { 1 }),
            ];
            let (code, display) = *self.rng.weighted(options);
            patient["maritalStatus"] = json!({
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                    "code": code,
                    "display": display,
                }],
                "text": display,
            });
        }
        self.world.out.emit(patient);
    }

    /// Renders every visit in date order and returns what later resources need to reference.
    fn visits(&mut self, problem_ids: &[String]) -> Vec<VisitRecord> {
        let mut records = Vec::with_capacity(self.plan.visits.len());
        for (index, visit) in self.plan.visits.iter().enumerate() {
            let record = self.visit(index, visit, problem_ids);
            records.push(record);
        }
        records
    }

    fn practitioner_for(&self, visit: &Visit) -> usize {
        let person = &self.plan.person;
        let region = person.region;
        let specialty = match visit.kind {
            VisitKind::Emergency => Some(Specialty::Emergency),
            VisitKind::Inpatient(_) | VisitKind::Procedure => Some(Specialty::Hospitalist),
            _ if visit.specialist => visit.reason.map(|cond| match cond {
                Cond::Hypertension
                | Cond::AtrialFibrillation
                | Cond::HeartFailure
                | Cond::CoronaryDisease => Specialty::Cardiology,
                Cond::Diabetes2 | Cond::Prediabetes | Cond::Hypothyroidism => {
                    Specialty::Endocrinology
                }
                Cond::Asthma | Cond::MildPersistentAsthma | Cond::Copd => Specialty::Pulmonology,
                _ => self.directory.practitioner(person.pcp).specialty,
            }),
            _ => None,
        };
        specialty.map_or(person.pcp, |s| self.directory.staff(region, s, 0))
    }

    fn visit_times(&mut self, visit: &Visit) -> (OffsetDateTime, Option<OffsetDateTime>) {
        let quarter = |rng: &mut Rng| (rng.below(4) * 15) as u8;
        let (start, minutes) = match visit.kind {
            VisitKind::Physical => {
                let hour = self.rng.range(8, 15) as u8;
                let minute = quarter(self.rng);
                (
                    self.zone.at(visit.date, hour, minute, 0),
                    self.rng.range(40, 60),
                )
            }
            VisitKind::FollowUp | VisitKind::Planned => {
                let hour = self.rng.range(8, 16) as u8;
                let minute = quarter(self.rng);
                (
                    self.zone.at(visit.date, hour, minute, 0),
                    self.rng.range(20, 40),
                )
            }
            VisitKind::Sick | VisitKind::Telehealth => {
                let hour = self.rng.range(8, 17) as u8;
                let minute = quarter(self.rng);
                (
                    self.zone.at(visit.date, hour, minute, 0),
                    self.rng.range(15, 30),
                )
            }
            VisitKind::Immunization => {
                let hour = self.rng.range(8, 17) as u8;
                let minute = quarter(self.rng);
                (
                    self.zone.at(visit.date, hour, minute, 0),
                    self.rng.range(10, 20),
                )
            }
            VisitKind::Procedure => {
                let hour = self.rng.range(7, 11) as u8;
                let minute = quarter(self.rng);
                (
                    self.zone.at(visit.date, hour, minute, 0),
                    self.rng.range(90, 150),
                )
            }
            VisitKind::Emergency => {
                let hour = self.rng.range(0, 23) as u8;
                let minute = self.rng.range(0, 59) as u8;
                let second = self.rng.range(0, 59) as u8;
                (
                    self.zone.at(visit.date, hour, minute, second),
                    self.rng.range(120, 400),
                )
            }
            VisitKind::Inpatient(days) => {
                let hour = self.rng.range(0, 23) as u8;
                let minute = self.rng.range(0, 59) as u8;
                let start = self.zone.at(visit.date, hour, minute, 0);
                let discharge_day = timefmt::add_days(visit.date, i64::from(days.max(1)));
                let discharge_hour = self.rng.range(10, 15) as u8;
                let discharge_minute = self.rng.range(0, 59) as u8;
                let end = self
                    .zone
                    .at(discharge_day, discharge_hour, discharge_minute, 0);
                return (start, Some(end));
            }
            VisitKind::InProgress => {
                let anchor = self.world.clock.anchor;
                let start = anchor - Duration::minutes(self.rng.range(35, 50));
                return (self.zone.localize(start), None);
            }
        };
        let end = self.zone.localize(start + Duration::minutes(minutes));
        (start, Some(end))
    }

    fn encounter_type(&self, kind: VisitKind, age: f64) -> Value {
        let cpt = |code, display| Code {
            system: super::catalog::CPT,
            code,
            display,
        };
        let sct = |code, display| Code {
            system: SNOMED,
            code,
            display,
        };
        let (codes, text): (Vec<Code>, &str) = match kind {
            VisitKind::Physical if age < 18.0 => {
                let (code, display) = if age < 1.0 {
                    (
                        "99391",
                        "Periodic comprehensive preventive medicine reevaluation and management, established patient; infant (age younger than 1 year)",
                    )
                } else if age < 5.0 {
                    (
                        "99392",
                        "Periodic comprehensive preventive medicine reevaluation and management, established patient; early childhood (age 1 through 4 years)",
                    )
                } else if age < 12.0 {
                    (
                        "99393",
                        "Periodic comprehensive preventive medicine reevaluation and management, established patient; late childhood (age 5 through 11 years)",
                    )
                } else {
                    (
                        "99394",
                        "Periodic comprehensive preventive medicine reevaluation and management, established patient; adolescent (age 12 through 17 years)",
                    )
                };
                (
                    vec![sct("410620009", "Well child visit"), cpt(code, display)],
                    "Well Child",
                )
            }
            VisitKind::Physical => {
                let (code, display) = if age < 40.0 {
                    (
                        "99395",
                        "Periodic comprehensive preventive medicine reevaluation and management, established patient; 18-39 years",
                    )
                } else if age < 65.0 {
                    (
                        "99396",
                        "Periodic comprehensive preventive medicine reevaluation and management, established patient; 40-64 years",
                    )
                } else {
                    (
                        "99397",
                        "Periodic comprehensive preventive medicine reevaluation and management, established patient; 65 years and older",
                    )
                };
                (
                    vec![
                        sct("162673000", "General examination of patient"),
                        cpt(code, display),
                    ],
                    "Annual Physical",
                )
            }
            VisitKind::FollowUp | VisitKind::Planned => (
                vec![
                    sct("390906007", "Follow-up encounter"),
                    cpt(
                        "99214",
                        "Office or other outpatient visit for the evaluation and management of an established patient, moderate level of medical decision making",
                    ),
                ],
                "Office Visit",
            ),
            VisitKind::Sick | VisitKind::InProgress => (
                vec![
                    sct("185345009", "Encounter for symptom"),
                    cpt(
                        "99213",
                        "Office or other outpatient visit for the evaluation and management of an established patient, low level of medical decision making",
                    ),
                ],
                "Office Visit",
            ),
            VisitKind::Immunization => (
                vec![
                    sct(
                        "33879002",
                        "Administration of vaccine to produce active immunity",
                    ),
                    cpt(
                        "90471",
                        "Immunization administration; 1 vaccine (single or combination vaccine/toxoid)",
                    ),
                ],
                "Immunization",
            ),
            VisitKind::Procedure => (
                vec![sct("185347001", "Encounter for problem")],
                "Procedure Visit",
            ),
            VisitKind::Emergency => (
                vec![
                    sct("50849002", "Emergency room admission"),
                    cpt(
                        "99284",
                        "Emergency department visit for the evaluation and management of a patient, moderate level of medical decision making",
                    ),
                ],
                "Emergency",
            ),
            VisitKind::Inpatient(_) => (
                vec![
                    sct("32485007", "Hospital admission"),
                    cpt(
                        "99223",
                        "Initial hospital inpatient or observation care, high level of medical decision making",
                    ),
                ],
                "Hospital Encounter",
            ),
            VisitKind::Telehealth => (
                vec![sct("448337001", "Telemedicine consultation with patient")],
                "Video Visit",
            ),
        };
        json!([concept(&codes, text)])
    }

    fn class_coding(kind: VisitKind) -> Value {
        let (code, display) = match kind {
            VisitKind::Emergency => ("EMER", "emergency"),
            VisitKind::Inpatient(_) => ("IMP", "inpatient encounter"),
            VisitKind::Telehealth => ("VR", "virtual"),
            _ => ("AMB", "ambulatory"),
        };
        json!({
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": code,
            "display": display,
        })
    }

    fn visit(&mut self, index: usize, visit: &Visit, problem_ids: &[String]) -> VisitRecord {
        let practitioner = self.practitioner_for(visit);
        let (start, end) = self.visit_times(visit);
        let encounter_id = self.fresh_id("Encounter");
        let today = self.world.clock.today;
        let age = self.plan.age(visit.date);
        let hospital = matches!(
            visit.kind,
            VisitKind::Emergency | VisitKind::Inpatient(_) | VisitKind::Procedure
        ) || self
            .directory
            .practitioner(practitioner)
            .specialty
            .hospital_based();
        let region = self.plan.person.region;
        let provider = if hospital {
            self.directory.hospital(region)
        } else {
            self.directory.clinic(region)
        };
        let status = match visit.kind {
            VisitKind::InProgress => "in-progress",
            VisitKind::Planned => "planned",
            _ => "finished",
        };
        let appointment_window = timefmt::add_years(today, -3);
        let appointment_id =
            (self.plan.appointments && visit.kind.scheduled() && visit.date >= appointment_window)
                .then(|| self.fresh_id("Appointment"));

        let mut period = Map::new();
        period.insert("start".into(), json!(timefmt::instant(start)));
        if let Some(end) = end {
            period.insert("end".into(), json!(timefmt::instant(end)));
        }
        let csn = self.rng.range(100_000_000, 999_999_999);
        let mut encounter = json!({
            "resourceType": "Encounter",
            "id": encounter_id,
            "identifier": [{ "use": "usual", "system": EPIC_CSN, "value": csn.to_string() }],
            "status": status,
            "class": Self::class_coding(visit.kind),
            "type": self.encounter_type(visit.kind, age),
            "subject": self.subject,
            "participant": [{
                "type": [{
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "ATND",
                        "display": "attender",
                    }],
                    "text": "attender",
                }],
                "period": Value::Object(period.clone()),
                "individual": self.practitioner_ref(practitioner),
            }],
            "period": Value::Object(period),
            "serviceProvider": Self::org_ref(provider),
        });
        let reason = visit.episode.as_ref().map(|e| e.cond).or(visit.reason);
        if let Some(cond) = reason {
            encounter["reasonCode"] = json!([condition_concept(cond)]);
        }
        if let VisitKind::Inpatient(days) = visit.kind {
            encounter["length"] = quantity_labelled(f64::from(days), 0, "days", "d");
            encounter["hospitalization"] = json!({
                "admitSource": status_concept(
                    "http://terminology.hl7.org/CodeSystem/admit-source",
                    "emd",
                    "From accident/emergency department",
                ),
                "dischargeDisposition": status_concept(
                    "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                    "home",
                    "Home",
                ),
            });
        }
        if let Some(id) = &appointment_id {
            encounter["appointment"] = json!([reference("Appointment", id)]);
        }
        let updated_from = match visit.kind {
            VisitKind::Planned => self.world.clock.anchor - Duration::days(self.rng.range(1, 30)),
            _ => end.unwrap_or(start),
        };
        encounter["meta"] = self.meta_after(updated_from, 600);
        self.world.out.emit(encounter);

        let record = VisitRecord {
            date: visit.date,
            kind: visit.kind,
            encounter: encounter_id,
            start,
            end,
            practitioner,
        };
        if let Some(id) = appointment_id {
            self.appointments(visit, &record, id);
        }
        if visit.kind == VisitKind::Planned {
            return record;
        }

        let acuity = Acuity::of(reason, self.rng);
        match visit.kind {
            VisitKind::Inpatient(days) => self.inpatient_observations(&record, days, acuity),
            VisitKind::Emergency => {
                let triage = start + Duration::minutes(self.rng.range(5, 20));
                self.vitals_set(&record, triage, acuity);
                if let Some(end) = end {
                    let recheck = end - Duration::minutes(self.rng.range(20, 45));
                    self.vitals_set(&record, recheck.max(start), Acuity::default());
                }
            }
            VisitKind::Telehealth => {
                // Half of adults report a home weight during a video visit.
                let reports_weight = age >= 18.0 && self.rng.chance(0.5);
                if reports_weight {
                    self.patient_reported_weight(&record);
                }
            }
            kind if kind.in_person() => {
                let at = (start + Duration::minutes(self.rng.range(3, 12))).min(
                    // A visit under way has only just begun: readings are never in the future.
                    self.world.clock.anchor - Duration::minutes(1),
                );
                self.vitals_set(&record, at, acuity);
            }
            _ => {}
        }
        self.visit_labs(index, visit, &record, acuity);
        if visit.kind == VisitKind::Physical && age >= 13.0 {
            if let Some(smoking) = self.plan.smoking {
                self.smoking_status(&record, smoking);
            }
        }
        for vaccine in &visit.vaccines {
            self.immunization(&record, *vaccine, age);
        }
        if let Some(episode) = &visit.episode {
            self.episode(&record, episode);
        }
        if let Some(procedure) = visit.procedure {
            let reason_problem = self
                .plan
                .problems
                .iter()
                .position(|p| Some(p.cond) == visit.reason && p.active_on(visit.date))
                .and_then(|i| problem_ids.get(i));
            self.procedure(&record, procedure, reason_problem.map(String::as_str));
        }
        record
    }

    fn observation(&mut self, spec: ObsSpec) -> String {
        let id = self.fresh_id("Observation");
        let anchor = self.world.clock.anchor;
        let measured = spec.effective.instant();
        let issued = (measured + spec.turnaround)
            .min(anchor - Duration::seconds(30))
            .max(measured);
        let recent = (anchor - measured) < Duration::days(7);
        let status = if spec.preliminary || (recent && spec.category == Category::Laboratory) {
            "preliminary"
        } else if self.rng.chance(0.015) {
            "amended"
        } else {
            "final"
        };
        let updated_window = if status == "amended" {
            60 * 24 * 20
        } else {
            90
        };
        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!("Observation"));
        resource.insert("id".into(), json!(id));
        resource.insert("meta".into(), self.meta_after(issued, updated_window));
        resource.insert("status".into(), json!(status));
        resource.insert("category".into(), json!([spec.category.concept()]));
        resource.insert(
            "code".into(),
            json!({
                "coding": [{ "system": LOINC, "code": spec.loinc.0, "display": spec.loinc.1 }],
                "text": spec.text,
            }),
        );
        resource.insert("subject".into(), self.subject.clone());
        if let Some(encounter) = &spec.encounter {
            resource.insert("encounter".into(), reference("Encounter", encounter));
        }
        spec.effective.write(&mut resource);
        resource.insert("issued".into(), json!(timefmt::utc(issued)));
        if let Some(performer) = spec.performer {
            resource.insert("performer".into(), json!([performer]));
        }
        match spec.value {
            ObsValue::Quantity(q) => {
                resource.insert("valueQuantity".into(), q);
            }
            ObsValue::Pressure(systolic, diastolic) => {
                let component = |code: &str, display: &str, text: &str, value: f64| {
                    json!({
                        "code": {
                            "coding": [{ "system": LOINC, "code": code, "display": display }],
                            "text": text,
                        },
                        "valueQuantity": quantity(value, 0, "mm[Hg]"),
                    })
                };
                resource.insert(
                    "component".into(),
                    json!([
                        component("8480-6", "Systolic blood pressure", "Systolic", systolic),
                        component("8462-4", "Diastolic blood pressure", "Diastolic", diastolic),
                    ]),
                );
            }
            ObsValue::Concept(code) => {
                resource.insert("valueCodeableConcept".into(), concept1(code));
            }
            ObsValue::Text(text) => {
                resource.insert("valueString".into(), json!(text));
            }
        }
        if let Some((code, display)) = spec.interpretation {
            resource.insert(
                "interpretation".into(),
                json!([{
                    "coding": [{ "system": INTERPRETATION, "code": code, "display": display }],
                    "text": display,
                }]),
            );
        }
        if let Some(range) = spec.range {
            resource.insert("referenceRange".into(), json!([range]));
        }
        self.world.out.emit(Value::Object(resource));
        id
    }

    fn vital_values(&mut self, date: Date, acuity: Acuity) -> Vitals {
        let plan = self.plan;
        let phys = &plan.physiology;
        let rng = &mut *self.rng;
        let age = plan.age(date);
        let hypertensive = plan.has(Cond::Hypertension, date);
        let treated = plan.treated(Cond::Hypertension, date);
        let copd = plan.has(Cond::Copd, date);
        let fibrillating = plan.has(Cond::AtrialFibrillation, date);
        let failing = plan.has(Cond::HeartFailure, date);

        let (mut systolic, mut diastolic) = if age < 18.0 {
            (
                95.0 + 1.2 * age + (phys.systolic - 114.0) * 0.5 + rng.normal(0.0, 6.0),
                57.0 + 0.8 * age + rng.normal(0.0, 5.0),
            )
        } else {
            let adult_years = (age.min(80.0) - 18.0).max(0.0);
            let htn = if !hypertensive {
                (0.0, 0.0)
            } else if treated {
                (7.0, 3.0)
            } else {
                (21.0, 10.0)
            };
            (
                phys.systolic + phys.pressure_drift * adult_years + htn.0 + rng.normal(0.0, 7.0),
                phys.diastolic + 0.12 * adult_years.min(40.0) + htn.1 + rng.normal(0.0, 5.0),
            )
        };
        if acuity.distress {
            systolic += 8.0;
            diastolic += 4.0;
        }
        systolic = systolic.clamp(80.0, 215.0);
        diastolic = diastolic.clamp(40.0, 125.0).min(systolic - 20.0);

        let resting = if age < 1.0 {
            130.0
        } else if age < 3.0 {
            115.0
        } else if age < 6.0 {
            100.0
        } else if age < 12.0 {
            88.0
        } else if age < 18.0 {
            78.0
        } else {
            phys.heart_rate
        };
        let mut heart_rate = resting + rng.normal(0.0, if fibrillating { 12.0 } else { 5.0 });
        if fibrillating {
            heart_rate += 10.0;
        }
        if acuity.fever {
            heart_rate += 14.0;
        }
        if acuity.distress {
            heart_rate += 10.0;
        }

        let breathing = if age < 1.0 {
            34.0
        } else if age < 3.0 {
            27.0
        } else if age < 6.0 {
            22.0
        } else if age < 12.0 {
            20.0
        } else {
            16.0
        };
        let mut respiratory_rate = breathing + rng.normal(0.0, 1.5);
        if copd {
            respiratory_rate += 3.0;
        }
        if acuity.respiratory {
            respiratory_rate += 4.0;
        }

        let temperature = if acuity.fever {
            rng.uniform(38.0, 39.6)
        } else {
            phys.temperature + rng.normal(0.0, 0.2)
        };

        let mut spo2 = phys.spo2 + rng.normal(0.0, 0.8);
        if copd {
            spo2 -= 4.0;
        }
        if acuity.respiratory {
            spo2 -= 3.5;
        }

        let height = phys.height_at(age) + rng.normal(0.0, 0.4);
        let meters = height / 100.0;
        let mut weight = phys.bmi_at(age) * meters * meters;
        weight += rng.normal(0.0, 0.35 * (weight / 70.0).max(0.1));
        if failing {
            weight += 2.0;
        }

        Vitals {
            systolic,
            diastolic,
            heart_rate: heart_rate.clamp(38.0, 200.0),
            respiratory_rate: respiratory_rate.clamp(8.0, 60.0),
            temperature: temperature.clamp(35.0, 41.0),
            spo2: spo2.clamp(82.0, 100.0),
            weight: weight.max(1.5),
            height: height.max(40.0),
        }
    }

    /// A full set of vital signs at a visit.
    fn vitals_set(&mut self, record: &VisitRecord, at: OffsetDateTime, acuity: Acuity) {
        let age = self.plan.age(record.date);
        let v = self.vital_values(record.date, acuity);
        let roll = self.rng.unit();
        let effective = if roll < 0.05 {
            Effective::Day(record.date)
        } else if roll < 0.08 {
            let end = at + Duration::minutes(self.rng.range(5, 15));
            Effective::Period(at, self.zone.localize(end))
        } else if roll < 0.13 {
            Effective::Utc(at)
        } else {
            Effective::Local(self.zone.localize(at))
        };
        let measure_height = age < 18.0
            || matches!(record.kind, VisitKind::Physical | VisitKind::InProgress)
            || self.rng.chance(0.3);
        let performer = Some(self.practitioner_ref(record.practitioner));
        let encounter = Some(record.encounter.clone());
        let vital =
            |loinc: (&'static str, &'static str), text: &'static str, value: ObsValue| ObsSpec {
                category: Category::VitalSigns,
                loinc,
                text,
                effective,
                value,
                encounter: encounter.clone(),
                performer: performer.clone(),
                interpretation: None,
                range: None,
                turnaround: Duration::minutes(4),
                preliminary: false,
            };
        let mut specs = Vec::with_capacity(8);
        if age >= 3.0 {
            specs.push(vital(
                ("85354-9", "Blood pressure panel with all children optional"),
                "Blood Pressure",
                ObsValue::Pressure(v.systolic, v.diastolic),
            ));
        }
        specs.push(vital(
            ("8867-4", "Heart rate"),
            "Pulse",
            ObsValue::Quantity(quantity(v.heart_rate, 0, "/min")),
        ));
        specs.push(vital(
            ("9279-1", "Respiratory rate"),
            "Resp",
            ObsValue::Quantity(quantity(v.respiratory_rate, 0, "/min")),
        ));
        specs.push(vital(
            ("8310-5", "Body temperature"),
            "Temp",
            ObsValue::Quantity(quantity(v.temperature, 1, "Cel")),
        ));
        specs.push(vital(
            (
                "59408-5",
                "Oxygen saturation in Arterial blood by Pulse oximetry",
            ),
            "SpO2",
            ObsValue::Quantity(quantity(v.spo2, 0, "%")),
        ));
        let weight = round(v.weight, 1);
        specs.push(vital(
            ("29463-7", "Body weight"),
            "Weight",
            ObsValue::Quantity(quantity(weight, 1, "kg")),
        ));
        if measure_height {
            let height = round(v.height, 1);
            specs.push(vital(
                ("8302-2", "Body height"),
                "Height",
                ObsValue::Quantity(quantity(height, 1, "cm")),
            ));
            if age >= 2.0 {
                let bmi = weight / (height / 100.0).powi(2);
                specs.push(vital(
                    ("39156-5", "Body mass index (BMI) [Ratio]"),
                    "BMI",
                    ObsValue::Quantity(quantity(bmi, 1, "kg/m2")),
                ));
            }
        }
        for spec in specs {
            self.observation(spec);
        }
    }

    /// A weight the patient reports during a video visit: a date, no time.
    fn patient_reported_weight(&mut self, record: &VisitRecord) {
        let v = self.vital_values(record.date, Acuity::default());
        let subject = self.subject.clone();
        self.observation(ObsSpec {
            category: Category::VitalSigns,
            loinc: ("29463-7", "Body weight"),
            text: "Weight (Patient Reported)",
            effective: Effective::Day(record.date),
            value: ObsValue::Quantity(quantity(v.weight, 1, "kg")),
            encounter: Some(record.encounter.clone()),
            performer: Some(subject),
            interpretation: None,
            range: None,
            turnaround: Duration::minutes(2),
            preliminary: false,
        });
    }

    /// Vital signs every four hours and morning labs for the length of a hospital stay.
    fn inpatient_observations(&mut self, record: &VisitRecord, days: u8, acuity: Acuity) {
        let Some(end) = record.end else {
            return;
        };
        let mut at = record.start + Duration::minutes(self.rng.range(10, 30));
        let mut checks = 0;
        while at < end {
            // Patients improve through the stay: the first day carries the admission acuity.
            let current = if checks < 6 {
                acuity
            } else {
                Acuity::default()
            };
            let date = self.zone.localize(at).date();
            self.vitals_on(record, at, date, current);
            at += Duration::minutes(240 + self.rng.range(-20, 20));
            checks += 1;
        }
        let mut first = true;
        for day in 0..=i64::from(days) {
            let date = timefmt::add_days(record.date, day);
            let draw = if first {
                record.start + Duration::minutes(self.rng.range(30, 90))
            } else {
                let minute = self.rng.range(0, 59) as u8;
                self.zone.at(date, 5, minute, 0)
            };
            if draw >= end {
                break;
            }
            let labs: &[Lab] = if first {
                &[
                    Lab::Glucose,
                    Lab::UreaNitrogen,
                    Lab::Creatinine,
                    Lab::Sodium,
                    Lab::Potassium,
                    Lab::Chloride,
                    Lab::Calcium,
                    Lab::Hemoglobin,
                    Lab::Leukocytes,
                    Lab::Platelets,
                ]
            } else {
                &[
                    Lab::Glucose,
                    Lab::Creatinine,
                    Lab::Sodium,
                    Lab::Potassium,
                    Lab::Hemoglobin,
                ]
            };
            let current = if first { acuity } else { Acuity::default() };
            for lab in labs {
                self.lab_result(record, *lab, draw, current);
            }
            first = false;
        }
    }

    /// Nursing vital signs during a stay (no height; the admission weight is enough).
    fn vitals_on(&mut self, record: &VisitRecord, at: OffsetDateTime, date: Date, acuity: Acuity) {
        let v = self.vital_values(date, acuity);
        let effective = Effective::Local(self.zone.localize(at));
        let performer = Some(self.practitioner_ref(record.practitioner));
        let specs = [
            (
                ("85354-9", "Blood pressure panel with all children optional"),
                "Blood Pressure",
                ObsValue::Pressure(v.systolic, v.diastolic),
            ),
            (
                ("8867-4", "Heart rate"),
                "Pulse",
                ObsValue::Quantity(quantity(v.heart_rate, 0, "/min")),
            ),
            (
                ("9279-1", "Respiratory rate"),
                "Resp",
                ObsValue::Quantity(quantity(v.respiratory_rate, 0, "/min")),
            ),
            (
                ("8310-5", "Body temperature"),
                "Temp",
                ObsValue::Quantity(quantity(v.temperature, 1, "Cel")),
            ),
            (
                (
                    "59408-5",
                    "Oxygen saturation in Arterial blood by Pulse oximetry",
                ),
                "SpO2",
                ObsValue::Quantity(quantity(v.spo2, 0, "%")),
            ),
        ];
        for (loinc, text, value) in specs {
            self.observation(ObsSpec {
                category: Category::VitalSigns,
                loinc,
                text,
                effective,
                value,
                encounter: Some(record.encounter.clone()),
                performer: performer.clone(),
                interpretation: None,
                range: None,
                turnaround: Duration::minutes(10),
                preliminary: false,
            });
        }
    }

    /// The labs a visit's plan calls for.
    fn visit_labs(&mut self, index: usize, visit: &Visit, record: &VisitRecord, acuity: Acuity) {
        let plan = self.plan;
        let date = visit.date;
        let draw = record.start + Duration::minutes(self.rng.range(10, 35));
        let draw = draw.min(self.world.clock.anchor - Duration::minutes(1));
        let mut labs: Vec<Lab> = Vec::new();
        match &plan.labs {
            LabPolicy::Single { visit: at, lab } => {
                if *at == index {
                    labs.push(*lab);
                }
            }
            LabPolicy::Standard => {
                let age = plan.age(date);
                let diabetic = plan.has(Cond::Diabetes2, date);
                let prediabetic = plan.has(Cond::Prediabetes, date);
                match visit.kind {
                    VisitKind::Physical if age >= 18.0 => {
                        labs.extend(Lab::BMP);
                        if self.rng.chance(0.8) {
                            labs.extend(Lab::CBC);
                        }
                        if age >= 20.0
                            && (plan.has(Cond::Hyperlipidemia, date) || self.rng.chance(0.6))
                        {
                            labs.extend(Lab::LIPIDS);
                        }
                        if diabetic || prediabetic {
                            labs.push(Lab::HbA1c);
                        }
                    }
                    VisitKind::Physical if (0.9..1.4).contains(&age) => {
                        labs.push(Lab::Hemoglobin);
                    }
                    VisitKind::FollowUp => {
                        let concerns: Vec<Cond> = match visit.reason {
                            Some(reason) => vec![reason],
                            None => plan
                                .problems
                                .iter()
                                .filter(|p| p.active_on(date))
                                .map(|p| p.cond)
                                .collect(),
                        };
                        for cond in concerns {
                            match cond {
                                Cond::Diabetes2 => labs.extend([Lab::HbA1c, Lab::Glucose]),
                                Cond::Prediabetes if self.rng.chance(0.5) => {
                                    labs.push(Lab::HbA1c);
                                }
                                Cond::Hypertension | Cond::Ckd3 | Cond::HeartFailure => {
                                    labs.extend([Lab::Creatinine, Lab::Potassium, Lab::Sodium]);
                                }
                                Cond::Hyperlipidemia if self.rng.chance(0.5) => {
                                    labs.extend(Lab::LIPIDS);
                                }
                                Cond::Anemia => labs.push(Lab::Hemoglobin),
                                Cond::AtrialFibrillation if self.rng.chance(0.3) => {
                                    labs.extend(Lab::CBC);
                                }
                                _ => {}
                            }
                        }
                    }
                    VisitKind::Emergency if self.rng.chance(0.7) => {
                        labs.extend(Lab::CBC);
                        labs.extend(Lab::BMP);
                    }
                    VisitKind::Procedure if self.rng.chance(0.5) => labs.push(Lab::Hemoglobin),
                    _ => {}
                }
                if visit.episode.as_ref().map(|e| e.cond) == Some(Cond::UrinaryInfection) {
                    self.urinalysis(record, draw);
                }
            }
        }
        // A test ordered for two reasons is still drawn once.
        let mut seen = [false; Lab::COUNT];
        for lab in labs {
            if !std::mem::replace(&mut seen[lab.index()], true) {
                self.lab_result(record, lab, draw, acuity);
            }
        }
    }

    fn lab_value(&mut self, lab: Lab, date: Date, acuity: Acuity) -> f64 {
        let plan = self.plan;
        let female = plan.person.female;
        let age = plan.age(date);
        let has = |c| plan.has(c, date);
        let treated = |c| plan.treated(c, date);
        let (mean, sd) = match lab {
            Lab::Glucose if has(Cond::Diabetes2) => {
                if treated(Cond::Diabetes2) {
                    (138.0, 25.0)
                } else {
                    (176.0, 38.0)
                }
            }
            Lab::Glucose if has(Cond::Prediabetes) => (108.0, 7.0),
            Lab::Glucose => (91.0 + if acuity.infection { 12.0 } else { 0.0 }, 8.0),
            Lab::UreaNitrogen if has(Cond::Ckd3) => (32.0, 6.0),
            Lab::UreaNitrogen => (
                13.0 + if age > 65.0 { 3.0 } else { 0.0 }
                    + if has(Cond::HeartFailure) { 6.0 } else { 0.0 },
                3.5,
            ),
            Lab::Creatinine if has(Cond::Ckd3) => (1.75, 0.25),
            Lab::Creatinine if age < 18.0 => (0.3 + 0.03 * age, 0.06),
            Lab::Creatinine => (
                if female { 0.78 } else { 0.98 } + if age > 70.0 { 0.08 } else { 0.0 },
                0.13,
            ),
            Lab::Sodium => (140.0 - if has(Cond::HeartFailure) { 2.5 } else { 0.0 }, 2.0),
            Lab::Potassium => (4.2 + if has(Cond::Ckd3) { 0.45 } else { 0.0 }, 0.3),
            Lab::Chloride => (103.0, 2.0),
            Lab::Calcium => (9.4, 0.3),
            Lab::Hemoglobin if has(Cond::Anemia) => {
                if female {
                    (10.4, 0.6)
                } else {
                    (11.5, 0.7)
                }
            }
            Lab::Hemoglobin if age < 12.0 => (12.1, 0.8),
            Lab::Hemoglobin => {
                if female {
                    (13.4, 0.8)
                } else {
                    (15.0, 0.9)
                }
            }
            Lab::Leukocytes => (7.0 + if acuity.infection { 5.0 } else { 0.0 }, 1.6),
            Lab::Platelets => (255.0, 45.0),
            Lab::HbA1c if has(Cond::Diabetes2) => {
                if treated(Cond::Diabetes2) {
                    (7.1, 0.6)
                } else {
                    (8.3, 0.9)
                }
            }
            Lab::HbA1c if has(Cond::Prediabetes) => (6.0, 0.2),
            Lab::HbA1c => (5.2, 0.25),
            Lab::Cholesterol if has(Cond::Hyperlipidemia) => {
                if treated(Cond::Hyperlipidemia) {
                    (182.0, 20.0)
                } else {
                    (246.0, 22.0)
                }
            }
            Lab::Cholesterol => (184.0, 22.0),
            Lab::Triglycerides => (
                115.0
                    + if has(Cond::Hyperlipidemia) || has(Cond::Diabetes2) {
                        70.0
                    } else {
                        0.0
                    },
                35.0,
            ),
            Lab::Hdl => (
                if female { 60.0 } else { 49.0 } - if has(Cond::Diabetes2) { 5.0 } else { 0.0 },
                10.0,
            ),
        };
        let bias = plan.physiology.lab_bias[lab.index()];
        let value = mean + bias * sd * 0.7 + self.rng.normal(0.0, sd * 0.6);
        let floor = match lab {
            Lab::Triglycerides => 35.0,
            Lab::Hdl => 20.0,
            Lab::Creatinine => 0.15,
            _ => mean * 0.3,
        };
        value.max(floor)
    }

    fn lab_result(&mut self, record: &VisitRecord, lab: Lab, draw: OffsetDateTime, acuity: Acuity) {
        let def = lab.def();
        let value = round(self.lab_value(lab, record.date, acuity), def.decimals);
        let (low, high) = lab.reference_range(self.plan.person.female);
        let interpretation = match (low, high) {
            (Some(l), _) if value < l => ("L", "Low"),
            (_, Some(h)) if value > h => ("H", "High"),
            _ => ("N", "Normal"),
        };
        let unit = def.unit;
        let mut range = Map::new();
        if let Some(l) = low {
            range.insert("low".into(), quantity(l, def.decimals, unit));
        }
        if let Some(h) = high {
            range.insert("high".into(), quantity(h, def.decimals, unit));
        }
        let text = match (low, high) {
            (Some(l), Some(h)) => format!("{l} - {h} {unit}"),
            (Some(l), None) => format!(">={l} {unit}"),
            (None, Some(h)) => format!("<={h} {unit}"),
            (None, None) => String::new(),
        };
        range.insert("text".into(), json!(text));
        let turnaround = Duration::minutes(self.rng.range(90, 60 * 30));
        let effective = if self.rng.chance(0.04) {
            Effective::Day(record.date)
        } else {
            Effective::Local(self.zone.localize(draw))
        };
        let measured = effective.instant();
        let issued = (measured + turnaround)
            .min(self.world.clock.anchor - Duration::seconds(30))
            .max(measured);
        let observation = self.observation(ObsSpec {
            category: Category::Laboratory,
            loinc: (def.loinc, def.display),
            text: def.text,
            effective,
            value: ObsValue::Quantity(quantity(value, def.decimals, unit)),
            encounter: Some(record.encounter.clone()),
            performer: None,
            interpretation: Some(interpretation),
            range: Some(Value::Object(range)),
            turnaround,
            preliminary: false,
        });
        self.labs.push(LabResult {
            encounter: record.encounter.clone(),
            practitioner: record.practitioner,
            observation,
            lab,
            draw,
            issued,
        });
    }

    /// Urinalysis for a suspected urinary infection: text, and coded dipstick results.
    fn urinalysis(&mut self, record: &VisitRecord, draw: OffsetDateTime) {
        const POSITIVE: Code = Code {
            system: SNOMED,
            code: "10828004",
            display: "Positive",
        };
        const NEGATIVE: Code = Code {
            system: SNOMED,
            code: "260385009",
            display: "Negative",
        };
        let color = *self.rng.pick(&["Yellow", "Dark yellow", "Straw", "Amber"]);
        let appearance = if self.rng.chance(0.7) {
            "Cloudy"
        } else {
            "Clear"
        };
        let esterase = self.rng.chance(0.85);
        let nitrite = self.rng.chance(0.6);
        let effective = Effective::Local(self.zone.localize(draw));
        let items = [
            (
                ("5778-6", "Color of Urine"),
                "Urine Color",
                ObsValue::Text(color),
                None,
            ),
            (
                ("5767-9", "Appearance of Urine"),
                "Urine Appearance",
                ObsValue::Text(appearance),
                None,
            ),
            (
                (
                    "5799-2",
                    "Leukocyte esterase [Presence] in Urine by Test strip",
                ),
                "Leukocyte Esterase",
                ObsValue::Concept(if esterase { POSITIVE } else { NEGATIVE }),
                Some(if esterase {
                    ("POS", "Positive")
                } else {
                    ("NEG", "Negative")
                }),
            ),
            (
                ("5802-4", "Nitrite [Presence] in Urine by Test strip"),
                "Nitrite",
                ObsValue::Concept(if nitrite { POSITIVE } else { NEGATIVE }),
                Some(if nitrite {
                    ("POS", "Positive")
                } else {
                    ("NEG", "Negative")
                }),
            ),
        ];
        for (loinc, text, value, interpretation) in items {
            self.observation(ObsSpec {
                category: Category::Laboratory,
                loinc,
                text,
                effective,
                value,
                encounter: Some(record.encounter.clone()),
                performer: None,
                interpretation,
                range: None,
                turnaround: Duration::minutes(45),
                preliminary: false,
            });
        }
    }

    fn smoking_status(&mut self, record: &VisitRecord, smoking: Smoking) {
        let effective = if self.rng.chance(0.5) {
            Effective::Day(record.date)
        } else {
            Effective::Local(record.start + Duration::minutes(5))
        };
        let performer = Some(self.practitioner_ref(record.practitioner));
        self.observation(ObsSpec {
            category: Category::SocialHistory,
            loinc: ("72166-2", "Tobacco smoking status"),
            text: "Tobacco Use",
            effective,
            value: ObsValue::Concept(smoking.code()),
            encounter: Some(record.encounter.clone()),
            performer,
            interpretation: None,
            range: None,
            turnaround: Duration::minutes(10),
            preliminary: false,
        });
    }

    fn immunization(&mut self, record: &VisitRecord, vaccine: Vaccine, age: f64) {
        let id = self.fresh_id("Immunization");
        let (cvx, display, route, dose) = vaccine.def();
        let at = self.zone.localize(
            (record.start + Duration::minutes(self.rng.range(10, 30)))
                .min(self.world.clock.anchor - Duration::minutes(1)),
        );
        let left = self.rng.chance(0.5);
        let (route_code, route_display) = match route {
            VaccineRoute::Intramuscular => ("IM", "Injection, intramuscular"),
            VaccineRoute::Subcutaneous => ("SQ", "Injection, subcutaneous"),
            VaccineRoute::Oral => ("PO", "Swallow, oral"),
        };
        let letters = b"ABCDEFGHJKLMNPRSTUVWXYZ";
        let lot = format!(
            "{}{}{}",
            char::from(*self.rng.pick(letters)),
            char::from(*self.rng.pick(letters)),
            self.rng.range(1000, 9999)
        );
        let expiry = timefmt::add_days(record.date, self.rng.range(120, 540));
        let mut resource = json!({
            "resourceType": "Immunization",
            "id": id,
            "meta": self.meta_after(at, 240),
            "status": "completed",
            "vaccineCode": {
                "coding": [{ "system": super::catalog::CVX, "code": cvx, "display": display }],
                "text": display,
            },
            "patient": self.subject,
            "encounter": reference("Encounter", &record.encounter),
            "occurrenceDateTime": timefmt::instant(at),
            "recorded": timefmt::utc(at + Duration::minutes(2)),
            "primarySource": true,
            "lotNumber": lot,
            "expirationDate": timefmt::date(expiry),
            "route": status_concept(
                "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
                route_code,
                route_display,
            ),
            "doseQuantity": quantity_labelled(dose, 1, "mL", "mL"),
            "performer": [{
                "function": status_concept(
                    "http://terminology.hl7.org/CodeSystem/v2-0443",
                    "AP",
                    "Administering Provider",
                ),
                "actor": self.practitioner_ref(record.practitioner),
            }],
        });
        if route != VaccineRoute::Oral {
            let (code, display) = match (age < 3.0, left) {
                (true, true) => ("LT", "left thigh"),
                (true, false) => ("RT", "right thigh"),
                (false, true) => ("LA", "left arm"),
                (false, false) => ("RA", "right arm"),
            };
            resource["site"] = status_concept(
                "http://terminology.hl7.org/CodeSystem/v3-ActSite",
                code,
                display,
            );
        }
        self.world.out.emit(resource);
    }

    fn clinical_status(active: bool, resolved: bool) -> Value {
        let (code, display) = if resolved {
            ("resolved", "Resolved")
        } else if active {
            ("active", "Active")
        } else {
            ("inactive", "Inactive")
        };
        status_concept(
            "http://terminology.hl7.org/CodeSystem/condition-clinical",
            code,
            display,
        )
    }

    fn verification(confirmed: bool) -> Value {
        let (code, display) = if confirmed {
            ("confirmed", "Confirmed")
        } else {
            ("provisional", "Provisional")
        };
        status_concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            code,
            display,
        )
    }

    fn condition_category(problem_list: bool) -> Value {
        let (code, display) = if problem_list {
            ("problem-list-item", "Problem List Item")
        } else {
            ("encounter-diagnosis", "Encounter Diagnosis")
        };
        json!([{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": code,
                "display": display,
            }],
            "text": display,
        }])
    }

    /// An acute diagnosis made at a visit, and the course of treatment prescribed for it.
    fn episode(&mut self, record: &VisitRecord, episode: &Episode) {
        let id = self.fresh_id("Condition");
        let today = self.world.clock.today;
        let resolved_on = timefmt::add_days(record.date, episode.resolves_after_days);
        let resolved = resolved_on < today;
        let mut condition = json!({
            "resourceType": "Condition",
            "id": id,
            "meta": self.meta_after(record.end.unwrap_or(record.start), 120),
            "clinicalStatus": Self::clinical_status(true, resolved),
            "verificationStatus": Self::verification(resolved || self.rng.chance(0.8)),
            "category": Self::condition_category(false),
            "code": condition_concept(episode.cond),
            "subject": self.subject,
            "encounter": reference("Encounter", &record.encounter),
            "recordedDate": timefmt::instant(record.start),
            "recorder": self.practitioner_ref(record.practitioner),
        });
        let roll = self.rng.unit();
        if roll < 0.55 {
            condition["onsetDateTime"] = json!(timefmt::instant(record.start));
        } else if roll < 0.9 {
            let began = timefmt::add_days(record.date, -self.rng.range(0, 3));
            condition["onsetDateTime"] = json!(timefmt::date(began));
        } else {
            let earliest = timefmt::add_days(record.date, -self.rng.range(2, 7));
            condition["onsetPeriod"] = json!({
                "start": timefmt::date(earliest),
                "end": timefmt::date(record.date),
            });
        }
        if resolved {
            condition["abatementDateTime"] = json!(timefmt::date(resolved_on));
        }
        self.world.out.emit(condition);
        if let Some(med) = episode.med {
            let plan = MedPlan {
                med,
                start: record.date,
                status: MedStatus::Completed,
                intent_plan: false,
            };
            self.medication_request(
                &plan,
                Some(record),
                Some((&id, episode.cond.def().text)),
                false,
            );
        }
    }

    fn procedure(&mut self, record: &VisitRecord, procedure: Proc, reason: Option<&str>) {
        let id = self.fresh_id("Procedure");
        let def = procedure.def();
        let start = self
            .zone
            .localize(record.start + Duration::minutes(self.rng.range(10, 30)));
        let end = self.zone.localize(start + Duration::minutes(def.minutes));
        let mut resource = json!({
            "resourceType": "Procedure",
            "id": id,
            "meta": self.meta_after(end, 600),
            "status": "completed",
            "category": concept1(def.category),
            "code": concept(&[def.snomed, def.cpt], def.snomed.display),
            "subject": self.subject,
            "encounter": reference("Encounter", &record.encounter),
            "performer": [{ "actor": self.practitioner_ref(record.practitioner) }],
        });
        if def.minutes >= 20 {
            resource["performedPeriod"] = json!({
                "start": timefmt::instant(start),
                "end": timefmt::instant(end),
            });
        } else {
            resource["performedDateTime"] = json!(timefmt::instant(start));
        }
        match (procedure, reason) {
            (_, Some(condition)) => {
                resource["reasonReference"] = json!([reference("Condition", condition)]);
            }
            (Proc::Colonoscopy, None) => {
                resource["reasonCode"] = json!([concept1(Code {
                    system: SNOMED,
                    code: "275978004",
                    display: "Screening for malignant neoplasm of colon",
                })]);
            }
            _ => {}
        }
        self.world.out.emit(resource);
    }

    /// The visit a later record attaches to: the first past visit on or after a date.
    fn first_visit_from(records: &[VisitRecord], date: Date) -> Option<&VisitRecord> {
        records.iter().find(|r| {
            r.date >= date && !matches!(r.kind, VisitKind::Planned | VisitKind::InProgress)
        })
    }

    fn problems(&mut self, records: &[VisitRecord], ids: &[String]) {
        for (problem, id) in self.plan.problems.iter().zip(ids) {
            let noticed = problem.onset.max(self.plan.record_start);
            let visit = Self::first_visit_from(records, noticed).cloned();
            self.problem(problem, id, visit.as_ref());
            for med in &problem.meds {
                let authored = Self::first_visit_from(records, med.start)
                    .filter(|r| r.date <= med.start + Duration::days(120))
                    .cloned();
                self.medication_request(
                    med,
                    authored.as_ref(),
                    Some((id, problem.cond.def().text)),
                    true,
                );
            }
        }
    }

    /// Prescriptions that answer no problem-list entry.
    fn other_medications(&mut self, records: &[VisitRecord]) {
        for med in &self.plan.other_meds {
            let authored = Self::first_visit_from(records, med.start)
                .filter(|r| r.date <= med.start + Duration::days(120))
                .cloned();
            self.medication_request(med, authored.as_ref(), None, true);
        }
    }

    fn problem(&mut self, problem: &Problem, id: &str, visit: Option<&VisitRecord>) {
        let today = self.world.clock.today;
        let (recorded, recorded_text) = match visit {
            Some(v) => (v.start, timefmt::instant(v.start)),
            None => {
                let at = self.zone.at(problem.onset, 12, 0, 0);
                (at, timefmt::date(problem.onset))
            }
        };
        let (active, resolved_on) = match problem.status {
            ProblemStatus::Active => (true, None),
            ProblemStatus::Inactive => (false, None),
            ProblemStatus::Resolved(end) if end < today => (false, Some(end)),
            ProblemStatus::Resolved(_) => (true, None),
        };
        let mut condition = json!({
            "resourceType": "Condition",
            "id": id,
            "meta": self.meta_after(recorded, 60 * 24 * 30),
            "clinicalStatus": Self::clinical_status(active, resolved_on.is_some()),
            "verificationStatus": Self::verification(true),
            "category": Self::condition_category(true),
            "code": condition_concept(problem.cond),
            "subject": self.subject,
            "recordedDate": recorded_text,
        });
        if let Some(v) = visit {
            condition["encounter"] = reference("Encounter", &v.encounter);
            condition["recorder"] = self.practitioner_ref(v.practitioner);
        }
        match problem.onset_style {
            OnsetStyle::Year => condition["onsetDateTime"] = json!(timefmt::year(problem.onset)),
            OnsetStyle::YearMonth => {
                condition["onsetDateTime"] = json!(timefmt::year_month(problem.onset));
            }
            OnsetStyle::Date => condition["onsetDateTime"] = json!(timefmt::date(problem.onset)),
            OnsetStyle::Instant => {
                let at = match visit {
                    Some(v) if v.date == problem.onset => v.start,
                    _ => self.zone.at(problem.onset, 9, 0, 0),
                };
                condition["onsetDateTime"] = json!(timefmt::instant(at));
            }
            OnsetStyle::Period => {
                let start = timefmt::add_days(problem.onset, -self.rng.range(30, 180));
                condition["onsetPeriod"] = json!({
                    "start": timefmt::date(start),
                    "end": timefmt::date(problem.onset),
                });
            }
        }
        if let Some(end) = resolved_on {
            condition["abatementDateTime"] = json!(timefmt::date(end));
        }
        self.world.out.emit(condition);
    }

    fn medication_request(
        &mut self,
        plan: &MedPlan,
        visit: Option<&VisitRecord>,
        reason: Option<(&str, &str)>,
        outpatient: bool,
    ) {
        let id = self.fresh_id("MedicationRequest");
        let def = plan.med.def();
        let today = self.world.clock.today;
        let (authored, requester) = match visit {
            Some(v) => {
                let at = v.start + Duration::minutes(self.rng.range(5, 20));
                let at = at.min(self.world.clock.anchor - Duration::minutes(1));
                (self.zone.localize(at), v.practitioner)
            }
            None => (self.zone.at(plan.start, 12, 0, 0), self.plan.person.pcp),
        };
        let authored_date = authored.date();
        let status = match plan.status {
            MedStatus::Active => "active",
            MedStatus::Stopped(end) if end < today => "stopped",
            MedStatus::Stopped(_) => "active",
            MedStatus::Completed => {
                let days = i64::from(def.course_days.unwrap_or(10));
                if timefmt::add_days(authored_date, days) < today {
                    "completed"
                } else {
                    "active"
                }
            }
        };
        let intent = if plan.intent_plan && status == "active" {
            "plan"
        } else {
            "order"
        };
        let (course_code, course_display) = match def.course_days {
            Some(_) => ("acute", "Short course (acute) therapy"),
            None => ("continuous", "Continuous long term therapy"),
        };
        let supply_days = def.course_days.unwrap_or(90);
        let validity_end = timefmt::add_days(
            authored_date,
            if def.course_days.is_some() { 30 } else { 365 },
        );
        let (frequency, period, period_unit) = def.timing;
        let (category_code, category_display) = if outpatient {
            ("outpatient", "Outpatient")
        } else {
            ("community", "Community")
        };
        let mut dosage = json!({
            "sequence": 1,
            "text": def.instruction,
            "timing": {
                "repeat": { "frequency": frequency, "period": period, "periodUnit": period_unit },
            },
            "asNeededBoolean": def.as_needed,
            "route": concept1(def.route.code()),
            "doseAndRate": [{
                "doseQuantity": quantity_labelled(def.dose.0, 0, def.dose.1, def.dose.2),
            }],
        });
        if def.dose.0.fract() != 0.0 {
            dosage["doseAndRate"][0]["doseQuantity"] =
                quantity_labelled(def.dose.0, 1, def.dose.1, def.dose.2);
        }
        let mut resource = json!({
            "resourceType": "MedicationRequest",
            "id": id,
            "meta": self.meta_after(authored, 60 * 24 * 7),
            "status": status,
            "intent": intent,
            "category": [{
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                    "code": category_code,
                    "display": category_display,
                }],
                "text": category_display,
            }],
            "medicationCodeableConcept": {
                "coding": [{
                    "system": super::catalog::RXNORM,
                    "code": def.rxnorm,
                    "display": def.display,
                }],
                "text": def.display,
            },
            "subject": self.subject,
            "authoredOn": timefmt::instant(authored),
            "requester": self.practitioner_ref(requester),
            "courseOfTherapyType": status_concept(
                "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
                course_code,
                course_display,
            ),
            "dosageInstruction": [dosage],
            "dispenseRequest": {
                "validityPeriod": {
                    "start": timefmt::date(authored_date),
                    "end": timefmt::date(validity_end),
                },
                "numberOfRepeatsAllowed": if def.course_days.is_some() { 0 } else { 3 },
                "quantity": { "value": def.dispense.0, "unit": def.dispense.1 },
                "expectedSupplyDuration": quantity_labelled(f64::from(supply_days), 0, "days", "d"),
            },
        });
        if let Some(v) = visit {
            resource["encounter"] = reference("Encounter", &v.encounter);
        }
        if let Some((condition, text)) = reason {
            resource["reasonReference"] = json!([reference_to("Condition", condition, text)]);
        }
        if status == "stopped" {
            resource["statusReason"] = json!({ "text": "Therapy changed by prescriber" });
        }
        self.world.out.emit(resource);
        self.prescriptions.push(Prescription {
            id,
            med: plan.med,
            authored,
            status,
            requester,
        });
    }

    fn allergies(&mut self, records: &[VisitRecord]) {
        for allergy in &self.plan.allergies {
            let id = self.fresh_id("AllergyIntolerance");
            let def = allergy.allergen.def();
            let visit = Self::first_visit_from(records, allergy.recorded).cloned();
            let recorded = visit
                .as_ref()
                .map_or_else(|| self.zone.at(allergy.recorded, 12, 0, 0), |v| v.start);
            let severity = if allergy.high_criticality {
                "severe"
            } else if self.rng.chance(0.5) {
                "moderate"
            } else {
                "mild"
            };
            let onset_year = timefmt::add_years(allergy.recorded, -(self.rng.range(0, 10) as i32))
                .max(self.plan.person.birth);
            let mut resource = json!({
                "resourceType": "AllergyIntolerance",
                "id": id,
                "meta": self.meta_after(recorded, 600),
                "clinicalStatus": status_concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "active",
                    "Active",
                ),
                "verificationStatus": status_concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "confirmed",
                    "Confirmed",
                ),
                "type": def.kind,
                "category": [def.category],
                "criticality": if allergy.high_criticality { "high" } else { "low" },
                "code": concept1(def.substance),
                "patient": self.subject,
                "onsetDateTime": timefmt::year(onset_year),
                "recordedDate": timefmt::instant(recorded),
                "reaction": [{
                    "manifestation": def.reactions.iter().map(|c| concept1(*c)).collect::<Vec<_>>(),
                    "severity": severity,
                }],
            });
            if let Some(v) = &visit {
                resource["encounter"] = reference("Encounter", &v.encounter);
                resource["recorder"] = self.practitioner_ref(v.practitioner);
            }
            self.world.out.emit(resource);
        }
    }

    fn appointment_json(
        &mut self,
        id: &str,
        status: &str,
        visit: &Visit,
        start: OffsetDateTime,
        end: OffsetDateTime,
        practitioner: usize,
    ) -> Value {
        let specialty = self.directory.practitioner(practitioner).specialty;
        let (type_code, type_display, description) = match visit.kind {
            VisitKind::Physical => (
                "CHECKUP",
                "A routine check-up, such as an annual physical",
                "Annual physical",
            ),
            VisitKind::FollowUp | VisitKind::Planned => (
                "FOLLOWUP",
                "A follow up visit from a previous appointment",
                "Follow-up visit",
            ),
            VisitKind::Telehealth => (
                "FOLLOWUP",
                "A follow up visit from a previous appointment",
                "Video visit",
            ),
            VisitKind::Immunization => (
                "ROUTINE",
                "Routine appointment - default if not valued",
                "Nurse visit: immunization",
            ),
            VisitKind::Procedure => (
                "ROUTINE",
                "Routine appointment - default if not valued",
                "Procedure",
            ),
            _ => (
                "WALKIN",
                "A previously unscheduled walk-in visit",
                "Same-day visit",
            ),
        };
        let created = (start - Duration::days(self.rng.range(3, 60)))
            .min(self.world.clock.anchor - Duration::hours(1));
        let minutes = (end - start).whole_minutes().max(5);
        let practitioner_ref = self.practitioner_ref(practitioner);
        let mut resource = json!({
            "resourceType": "Appointment",
            "id": id,
            "status": status,
            "serviceType": [concept1(specialty.code())],
            "appointmentType": {
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0276",
                    "code": type_code,
                    "display": type_display,
                }],
            },
            "description": description,
            "start": timefmt::utc(start),
            "end": timefmt::utc(end),
            "minutesDuration": minutes,
            "created": timefmt::utc(created),
            "participant": [
                { "actor": self.subject, "required": "required", "status": "accepted" },
                { "actor": practitioner_ref, "required": "required", "status": "accepted" },
            ],
        });
        if let Some(cond) = visit.reason {
            resource["reasonCode"] = json!([condition_concept(cond)]);
        }
        let updated_from = if status == "booked" {
            created
        } else {
            end.min(start + Duration::hours(4))
        };
        resource["meta"] = self.meta_after(updated_from, 600);
        resource
    }

    /// The Appointment a visit fulfilled (or, for a future visit, is booked for), sometimes
    /// preceded by a cancelled or missed booking for the same need.
    fn appointments(&mut self, visit: &Visit, record: &VisitRecord, id: String) {
        let end = record.end.unwrap_or(record.start + Duration::minutes(30));
        let status = if visit.kind == VisitKind::Planned {
            "booked"
        } else {
            "fulfilled"
        };
        let appointment =
            self.appointment_json(&id, status, visit, record.start, end, record.practitioner);
        self.world.out.emit(appointment);
        if visit.kind == VisitKind::Planned {
            return;
        }
        let roll = self.rng.unit();
        if roll < 0.1 {
            let days_before = self.rng.range(3, 21);
            let earlier =
                timefmt::weekday_on_or_before(timefmt::add_days(record.date, -days_before));
            let shift = record.date - earlier;
            let (start, end) = (record.start - shift, end - shift);
            let start = self.zone.localize(start);
            let end = self.zone.localize(end);
            let missed_id = self.fresh_id("Appointment");
            let noshow = roll < 0.03;
            let mut missed = self.appointment_json(
                &missed_id,
                if noshow { "noshow" } else { "cancelled" },
                visit,
                start,
                end,
                record.practitioner,
            );
            if !noshow {
                let reasons = [
                    ("pat", "Patient"),
                    ("prov", "Provider"),
                    ("oth-weath", "Other: Weather"),
                ];
                let (code, display) = *self.rng.pick(&reasons);
                missed["cancelationReason"] = status_concept(
                    "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                    code,
                    display,
                );
            }
            self.world.out.emit(missed);
        }
    }

    /// Daily home readings (blood pressure, pulse, weight, oxygen), grouped into one virtual
    /// remote-monitoring Encounter per calendar month.
    fn monitoring(&mut self, monitoring: Monitoring) {
        let today = self.world.clock.today;
        let last_day = timefmt::add_days(monitoring.start, monitoring.days - 1)
            .min(timefmt::add_days(today, -1));
        let mut month_start = monitoring.start;
        while month_start <= last_day {
            let next_month = {
                let (year, month) = if month_start.month() == time::Month::December {
                    (month_start.year() + 1, time::Month::January)
                } else {
                    (month_start.year(), month_start.month().next())
                };
                Date::from_calendar_date(year, month, 1).unwrap_or(Date::MAX)
            };
            let month_end = timefmt::add_days(next_month, -1).min(last_day);
            let mut readings = Vec::new();
            let mut day = month_start;
            while day <= month_end {
                if !self.rng.chance(0.05) {
                    let hour = self.rng.range(6, 8) as u8;
                    let minute = self.rng.range(0, 59) as u8;
                    let second = self.rng.range(0, 59) as u8;
                    readings.push(self.zone.at(day, hour, minute, second));
                }
                day = timefmt::add_days(day, 1);
            }
            if let (Some(first), Some(last)) = (readings.first().copied(), readings.last().copied())
            {
                self.monitoring_month(&readings, first, last);
            }
            month_start = next_month;
        }
    }

    fn monitoring_month(
        &mut self,
        readings: &[OffsetDateTime],
        first: OffsetDateTime,
        last: OffsetDateTime,
    ) {
        let today = self.world.clock.today;
        let encounter_id = self.fresh_id("Encounter");
        let pcp = self.plan.person.pcp;
        let clinic = self.directory.clinic(self.plan.person.region).clone();
        let period = json!({
            "start": timefmt::instant(first),
            "end": timefmt::instant(last + Duration::minutes(1)),
        });
        let csn = self.rng.range(100_000_000, 999_999_999);
        let encounter = json!({
            "resourceType": "Encounter",
            "id": encounter_id,
            "meta": self.meta_after(last, 600),
            "identifier": [{ "use": "usual", "system": EPIC_CSN, "value": csn.to_string() }],
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "VR",
                "display": "virtual",
            },
            "type": [concept(
                &[Code {
                    system: super::catalog::CPT,
                    code: "99457",
                    display: "Remote physiologic monitoring treatment management services, first 20 minutes",
                }],
                "Remote Patient Monitoring",
            )],
            "subject": self.subject,
            "participant": [{
                "type": [{
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "ATND",
                        "display": "attender",
                    }],
                    "text": "attender",
                }],
                "individual": self.practitioner_ref(pcp),
            }],
            "period": period,
            "serviceProvider": Self::org_ref(&clinic),
        });
        self.world.out.emit(encounter);
        for &at in readings {
            let date = at.date();
            let v = self.vital_values(date, Acuity::default());
            // Readings not yet reviewed by the care team are still preliminary.
            let preliminary = (today - date).whole_days() <= 2;
            let subject = self.subject.clone();
            let specs = [
                (
                    ("85354-9", "Blood pressure panel with all children optional"),
                    "Blood Pressure (Home)",
                    ObsValue::Pressure(v.systolic, v.diastolic),
                ),
                (
                    ("8867-4", "Heart rate"),
                    "Pulse (Home)",
                    ObsValue::Quantity(quantity(v.heart_rate, 0, "/min")),
                ),
                (
                    ("29463-7", "Body weight"),
                    "Weight (Home)",
                    ObsValue::Quantity(quantity(v.weight, 1, "kg")),
                ),
                (
                    (
                        "59408-5",
                        "Oxygen saturation in Arterial blood by Pulse oximetry",
                    ),
                    "SpO2 (Home)",
                    ObsValue::Quantity(quantity(v.spo2, 0, "%")),
                ),
            ];
            for (loinc, text, value) in specs {
                self.observation(ObsSpec {
                    category: Category::VitalSigns,
                    loinc,
                    text,
                    effective: Effective::Utc(at),
                    value,
                    encounter: Some(encounter_id.clone()),
                    performer: Some(subject.clone()),
                    interpretation: None,
                    range: None,
                    turnaround: Duration::minutes(1),
                    preliminary,
                });
            }
        }
    }
}
