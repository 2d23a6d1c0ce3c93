//! The second pass over each rendered patient: the records Epic's R4 API serves beside the
//! core history, derived from what the first pass wrote.
//!
//! - **Lab reports**: each blood draw gets a Specimen, and each panel drawn (basic metabolic,
//!   blood count, lipids, or a single test) a ServiceRequest (the order) and a
//!   DiagnosticReport whose `result` lists the panel's Observations.
//! - **Clinical notes**: each finished visit of the last three years gets a DocumentReference
//!   (progress note, emergency note or discharge summary) whose attachment is a Binary holding
//!   the note as plain text.
//! - **Episodes of care**: an active diabetes, heart failure, COPD or kidney disease problem
//!   gets an EpisodeOfCare of the care program managing it.
//! - **Devices**: a patient on home monitoring has a blood pressure cuff, a diabetic a glucose
//!   meter.
//! - **Dispenses**: prescriptions of the last two years are filled (a first fill, then 90-day
//!   refills while active), each MedicationDispense referring to a Medication resource shared
//!   by every patient.
//! - **Places and roles** (once, with the directory): a Location per Organization and a
//!   PractitionerRole per Practitioner.
//!
//! This pass draws from its own random streams, so the first pass's output is byte-for-byte
//! what it was before the pass existed.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Value, json};
use time::{Date, Duration, OffsetDateTime};

use super::World;
use super::catalog::{Code, Cond, LOINC, Lab, Med, RXNORM, SNOMED};
use super::fhir::{concept, concept1, reference, reference_to};
use super::people::{Directory, Named};
use super::plan::VisitKind;
use super::render::{History, LabResult, Prescription, VisitRecord};
use super::rng::Rng;
use super::timefmt;

/// Clinical notes are written for visits this many years back.
const NOTE_YEARS: i32 = 3;
/// Prescriptions authored this many years back are dispensed.
const DISPENSE_YEARS: i32 = 2;
/// Days between refills of a long-term prescription.
const REFILL_DAYS: i64 = 90;

const UCUM: &str = "http://unitsofmeasure.org";
const DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const NOTE_CATEGORY: &str =
    "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category";
const EPISODE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/episodeofcare-type";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";

/// The Medications written so far (the directory's Locations and PractitionerRoles are
/// written when it is built).
pub(super) struct Records {
    /// Medication id per drug (RxNorm code), created on first dispense.
    medications: HashMap<&'static str, String>,
}

impl Records {
    /// Emits a Location per Organization and a PractitionerRole per Practitioner.
    pub(super) fn build(world: &mut World<'_>, rng: &mut Rng, directory: &Directory) -> Self {
        let mut locations = Vec::new();
        for (index, org) in directory.organizations().iter().enumerate() {
            let id = world.ids.fresh(rng, "Location");
            let hospital = index % 2 == 1;
            let (code, display) = if hospital {
                ("HOSP", "Hospital")
            } else {
                ("OF", "Outpatient facility")
            };
            let name = if hospital {
                format!("{} Main Campus", org.display)
            } else {
                format!("{} Primary Care", org.display)
            };
            world.out.emit(json!({
                "resourceType": "Location",
                "id": id,
                "meta": { "lastUpdated": world.clock.last_updated_before(rng, 400) },
                "status": "active",
                "name": name,
                "mode": "instance",
                "type": [{
                    "coding": [{ "system": ROLE_CODE, "code": code, "display": display }],
                    "text": display,
                }],
                "managingOrganization": reference_to("Organization", &org.id, &org.display),
            }));
            locations.push(Named { id, display: name });
        }
        for practitioner in directory.practitioners() {
            let id = world.ids.fresh(rng, "PractitionerRole");
            let org_index =
                practitioner.region * 2 + usize::from(practitioner.specialty.hospital_based());
            let orgs = directory.organizations();
            let org = &orgs[org_index % orgs.len()];
            let location = &locations[org_index % locations.len()];
            world.out.emit(json!({
                "resourceType": "PractitionerRole",
                "id": id,
                "meta": { "lastUpdated": world.clock.last_updated_before(rng, 400) },
                "active": true,
                "practitioner": reference_to("Practitioner", &practitioner.who.id, &practitioner.who.display),
                "organization": reference_to("Organization", &org.id, &org.display),
                "location": [reference_to("Location", &location.id, &location.display)],
                "code": [{
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
                        "code": "doctor",
                        "display": "Doctor",
                    }],
                    "text": "Physician",
                }],
                "specialty": [concept1(practitioner.specialty.code())],
            }));
        }
        Records {
            medications: HashMap::new(),
        }
    }

    /// Emits the second-pass records of one patient.
    pub(super) fn emit(
        &mut self,
        history: &History,
        rng: &mut Rng,
        world: &mut World<'_>,
        directory: &Directory,
    ) {
        let mut pass = Pass {
            history,
            rng,
            world,
            directory,
        };
        pass.lab_reports();
        pass.notes();
        pass.episodes();
        pass.devices();
        for prescription in &history.prescriptions {
            pass.dispenses(prescription, &mut self.medications);
        }
    }
}

/// The panel a lab result is reported under: LOINC code and display.
fn panel(lab: Lab) -> (&'static str, &'static str) {
    if Lab::BMP.contains(&lab) {
        ("51990-0", "Basic metabolic panel - Blood")
    } else if Lab::CBC.contains(&lab) {
        ("58410-2", "CBC panel - Blood by Automated count")
    } else if Lab::LIPIDS.contains(&lab) {
        ("57698-3", "Lipid panel with direct LDL - Serum or Plasma")
    } else {
        let def = lab.def();
        (def.loinc, def.display)
    }
}

struct Pass<'a, 'w> {
    history: &'a History,
    rng: &'a mut Rng,
    world: &'a mut World<'w>,
    directory: &'a Directory,
}

impl Pass<'_, '_> {
    fn fresh(&mut self, resource_type: &str) -> String {
        self.world.ids.fresh(self.rng, resource_type)
    }

    fn meta_after(&mut self, at: OffsetDateTime, minutes: i64) -> Value {
        json!({ "lastUpdated": self.world.clock.last_updated_after(self.rng, at, minutes) })
    }

    fn practitioner(&self, index: usize) -> Value {
        let p = &self.directory.practitioner(index).who;
        reference_to("Practitioner", &p.id, &p.display)
    }

    fn clinic(&self) -> Value {
        let org = self.directory.clinic(self.history.region);
        reference_to("Organization", &org.id, &org.display)
    }

    fn local(&self, at: OffsetDateTime) -> String {
        timefmt::instant(self.history.zone.localize(at))
    }

    /// A Specimen per draw, and a ServiceRequest and DiagnosticReport per panel drawn.
    fn lab_reports(&mut self) {
        let labs = &self.history.labs;
        let mut start = 0;
        while start < labs.len() {
            let same_draw =
                |r: &LabResult| r.encounter == labs[start].encounter && r.draw == labs[start].draw;
            let end = start + labs[start..].iter().take_while(|r| same_draw(r)).count();
            self.draw(&labs[start..end]);
            start = end;
        }
    }

    fn draw(&mut self, results: &[LabResult]) {
        let first = &results[0];
        let anchor = self.world.clock.anchor;
        let mut panels: Vec<((&'static str, &'static str), Vec<&LabResult>)> = Vec::new();
        for result in results {
            let key = panel(result.lab);
            match panels.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(result),
                None => panels.push((key, vec![result])),
            }
        }
        let mut orders = Vec::new();
        for ((code, display), _) in &panels {
            let id = self.fresh("ServiceRequest");
            let authored = first.draw - Duration::minutes(self.rng.range(5, 90));
            let meta = self.meta_after(first.draw, 60);
            self.world.out.emit(json!({
                "resourceType": "ServiceRequest",
                "id": id,
                "meta": meta,
                "status": "completed",
                "intent": "order",
                "category": [concept(&[Code { system: SNOMED, code: "108252007", display: "Laboratory procedure" }], "Lab")],
                "code": { "coding": [{ "system": LOINC, "code": code, "display": display }], "text": display },
                "subject": self.history.subject,
                "encounter": reference("Encounter", &first.encounter),
                "occurrenceDateTime": self.local(first.draw),
                "authoredOn": self.local(authored),
                "requester": self.practitioner(first.practitioner),
            }));
            orders.push(id);
        }
        let specimen = self.fresh("Specimen");
        let received = (first.draw + Duration::minutes(self.rng.range(10, 90)))
            .min(anchor - Duration::seconds(30));
        let meta = self.meta_after(received, 30);
        self.world.out.emit(json!({
            "resourceType": "Specimen",
            "id": specimen,
            "meta": meta,
            "status": "available",
            "type": concept(&[Code { system: SNOMED, code: "119297000", display: "Blood specimen" }], "Blood"),
            "subject": self.history.subject,
            "receivedTime": timefmt::utc(received),
            "request": orders.iter().map(|id| reference("ServiceRequest", id)).collect::<Vec<_>>(),
            "collection": {
                "collectedDateTime": self.local(first.draw),
                "method": { "text": "Venipuncture" },
            },
        }));
        for (((code, display), members), order) in panels.iter().zip(&orders) {
            let id = self.fresh("DiagnosticReport");
            let issued = members.iter().map(|r| r.issued).max().unwrap_or(first.draw);
            let status = if anchor - issued < Duration::days(7) {
                "preliminary"
            } else {
                "final"
            };
            let meta = self.meta_after(issued, 90);
            self.world.out.emit(json!({
                "resourceType": "DiagnosticReport",
                "id": id,
                "meta": meta,
                "basedOn": [reference("ServiceRequest", order)],
                "status": status,
                "category": [{
                    "coding": [{ "system": DIAGNOSTIC_SERVICE, "code": "LAB", "display": "Laboratory" }],
                    "text": "Lab",
                }],
                "code": { "coding": [{ "system": LOINC, "code": code, "display": display }], "text": display },
                "subject": self.history.subject,
                "encounter": reference("Encounter", &first.encounter),
                "effectiveDateTime": self.local(first.draw),
                "issued": timefmt::utc(issued),
                "performer": [self.clinic()],
                "specimen": [reference("Specimen", &specimen)],
                "result": members.iter().map(|r| reference("Observation", &r.observation)).collect::<Vec<_>>(),
            }));
        }
    }

    /// A DocumentReference and its Binary for each finished visit of the last three years.
    fn notes(&mut self) {
        let since = timefmt::add_years(self.world.clock.today, -NOTE_YEARS);
        let visits: Vec<&VisitRecord> = self
            .history
            .visits
            .iter()
            .filter(|v| v.date >= since && v.end.is_some())
            .filter(|v| !matches!(v.kind, VisitKind::Planned | VisitKind::InProgress))
            .collect();
        for visit in visits {
            self.note(visit);
        }
    }

    fn note(&mut self, visit: &VisitRecord) {
        let (loinc, title) = match visit.kind {
            VisitKind::Inpatient(_) => ("18842-5", "Discharge summary"),
            VisitKind::Emergency => ("34111-5", "Emergency department note"),
            VisitKind::Immunization => ("34746-8", "Nurse note"),
            _ => ("11506-3", "Progress note"),
        };
        let end = visit.end.unwrap_or(visit.start);
        let signed = (end + Duration::minutes(self.rng.range(10, 240)))
            .min(self.world.clock.anchor - Duration::seconds(30));
        let author = self.directory.practitioner(visit.practitioner).who.clone();
        let active: Vec<&str> = self
            .history
            .problems
            .iter()
            .filter(|(_, _, onset, _)| *onset <= visit.date)
            .map(|(_, cond, _, _)| cond.def().text)
            .collect();
        let assessment = if active.is_empty() {
            "No chronic problems on the problem list.".to_owned()
        } else {
            format!("Problems addressed: {}.", active.join("; "))
        };
        let plan = *self.rng.pick(&[
            "Continue current medications. Return in 3 months.",
            "Labs reviewed with the patient. Follow up as needed.",
            "Counselled on diet and exercise. Recheck at the next visit.",
            "Symptoms improving. Call the clinic if they worsen.",
        ]);
        let text = format!(
            "{title}\nDate of service: {}\nClinician: {}\n\nAssessment: {assessment}\nPlan: {plan}\n\nThis note is synthetic test data generated by the epic-fhir sandbox.\n",
            timefmt::date(visit.date),
            author.display
        );
        let binary = self.fresh("Binary");
        let meta = self.meta_after(signed, 5);
        self.world.out.emit(json!({
            "resourceType": "Binary",
            "id": binary,
            "meta": meta,
            "contentType": "text/plain",
            "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
        }));
        let id = self.fresh("DocumentReference");
        let meta = self.meta_after(signed, 60);
        let mut period = json!({ "start": self.local(visit.start) });
        if let Some(end) = visit.end {
            period["end"] = json!(self.local(end));
        }
        self.world.out.emit(json!({
            "resourceType": "DocumentReference",
            "id": id,
            "meta": meta,
            "status": "current",
            "docStatus": "final",
            "type": { "coding": [{ "system": LOINC, "code": loinc, "display": title }], "text": title },
            "category": [{
                "coding": [{ "system": NOTE_CATEGORY, "code": "clinical-note", "display": "Clinical Note" }],
                "text": "Clinical Note",
            }],
            "subject": self.history.subject,
            "date": timefmt::utc(signed),
            "author": [reference_to("Practitioner", &author.id, &author.display)],
            "authenticator": reference_to("Practitioner", &author.id, &author.display),
            "custodian": self.clinic(),
            "content": [{
                "attachment": {
                    "contentType": "text/plain",
                    "url": format!("Binary/{binary}"),
                    "size": text.len(),
                    "title": title,
                    "creation": timefmt::utc(signed),
                },
                "format": {
                    "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                    "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
                    "display": "mimeType Sufficient",
                },
            }],
            "context": {
                "encounter": [reference("Encounter", &visit.encounter)],
                "period": period,
            },
        }));
    }

    /// An EpisodeOfCare per active problem managed by a care program.
    fn episodes(&mut self) {
        let problems = self.history.problems.clone();
        for (condition, cond, onset, active) in problems {
            let (code, display, program) = match cond {
                Cond::Diabetes2 => (
                    "diab",
                    "Post co-ordinated diabetes program",
                    "Diabetes care program",
                ),
                Cond::HeartFailure | Cond::Copd | Cond::Ckd3 => (
                    "hacc",
                    "Home and Community Care",
                    "Chronic disease management",
                ),
                _ => continue,
            };
            if !active {
                continue;
            }
            let id = self.fresh("EpisodeOfCare");
            let since = self.world.clock.anchor - Duration::days(self.rng.range(1, 300));
            let meta = self.meta_after(since, 60);
            let start = timefmt::add_days(onset, self.rng.range(0, 60)).min(self.world.clock.today);
            self.world.out.emit(json!({
                "resourceType": "EpisodeOfCare",
                "id": id,
                "meta": meta,
                "status": "active",
                "type": [{
                    "coding": [{ "system": EPISODE_TYPE, "code": code, "display": display }],
                    "text": program,
                }],
                "diagnosis": [{
                    "condition": reference_to("Condition", &condition, cond.def().text),
                    "rank": 1,
                }],
                "patient": self.history.subject,
                "managingOrganization": self.clinic(),
                "period": { "start": timefmt::date(start) },
                "careManager": self.practitioner(self.history.pcp),
            }));
        }
    }

    /// Home devices: a blood pressure cuff for home monitoring, a glucose meter for diabetes.
    fn devices(&mut self) {
        let diabetic = self
            .history
            .problems
            .iter()
            .find(|(_, cond, _, active)| *cond == Cond::Diabetes2 && *active)
            .map(|(_, _, onset, _)| *onset);
        let devices: [(Option<Date>, &str, &str, &str); 2] = [
            (
                self.history.monitoring,
                "70665002",
                "Blood pressure cuff",
                "Home blood pressure monitor",
            ),
            (
                diabetic,
                "337414009",
                "Blood glucose meter",
                "Home blood glucose meter",
            ),
        ];
        for (since, code, display, name) in devices {
            let Some(since) = since else { continue };
            let id = self.fresh("Device");
            let at = self.world.clock.anchor - Duration::days(self.rng.range(1, 200));
            let meta = self.meta_after(at, 60);
            let serial = format!("SN{:08}", self.rng.range(0, 99_999_999));
            self.world.out.emit(json!({
                "resourceType": "Device",
                "id": id,
                "meta": meta,
                "status": "active",
                "serialNumber": serial,
                "deviceName": [{ "name": name, "type": "user-friendly-name" }],
                "type": concept(&[Code { system: SNOMED, code, display }], display),
                "patient": self.history.subject,
                "note": [{ "text": format!("In use since {}", timefmt::date(since)) }],
            }));
        }
    }

    /// The fills of one prescription authored in the last two years.
    fn dispenses(
        &mut self,
        prescription: &Prescription,
        medications: &mut HashMap<&'static str, String>,
    ) {
        let today = self.world.clock.today;
        let anchor = self.world.clock.anchor;
        if prescription.authored.date() < timefmt::add_years(today, -DISPENSE_YEARS) {
            return;
        }
        let def = prescription.med.def();
        let medication = self.medication(prescription.med, medications);
        let long_term = def.course_days.is_none();
        let supply = def.course_days.map_or(REFILL_DAYS, i64::from);
        let mut fill = prescription.authored + Duration::hours(self.rng.range(1, 72));
        let last = match prescription.status {
            "active" if long_term => 4,
            _ => 1,
        };
        for number in 0..last {
            if fill >= anchor - Duration::hours(1) {
                break;
            }
            let id = self.fresh("MedicationDispense");
            let prepared = fill - Duration::minutes(self.rng.range(20, 180));
            let meta = self.meta_after(fill, 30);
            let (code, display) = if number == 0 {
                ("FF", "First Fill")
            } else {
                ("RF", "Refill")
            };
            self.world.out.emit(json!({
                "resourceType": "MedicationDispense",
                "id": id,
                "meta": meta,
                "status": "completed",
                "category": { "coding": [{ "system": "http://terminology.hl7.org/fhir/CodeSystem/medicationdispense-category", "code": "community", "display": "Community" }] },
                "medicationReference": reference_to("Medication", &medication, def.display),
                "subject": self.history.subject,
                "authorizingPrescription": [reference("MedicationRequest", &prescription.id)],
                "type": { "coding": [{ "system": ACT_CODE, "code": code, "display": display }], "text": display },
                "quantity": { "value": def.dispense.0, "unit": def.dispense.1 },
                "daysSupply": { "value": supply, "unit": "days", "system": UCUM, "code": "d" },
                "whenPrepared": self.local(prepared),
                "whenHandedOver": self.local(fill),
                "dosageInstruction": [{ "text": def.instruction }],
                "performer": [{ "actor": self.practitioner(prescription.requester) }],
            }));
            fill += Duration::days(supply);
        }
    }

    /// The Medication resource of a drug, emitted on its first dispense.
    fn medication(&mut self, med: Med, medications: &mut HashMap<&'static str, String>) -> String {
        let def = med.def();
        if let Some(id) = medications.get(def.rxnorm) {
            return id.clone();
        }
        let id = self.fresh("Medication");
        let at = self.world.clock.anchor - Duration::days(self.rng.range(400, 2000));
        let meta = self.meta_after(at, 60);
        self.world.out.emit(json!({
            "resourceType": "Medication",
            "id": id,
            "meta": meta,
            "code": {
                "coding": [{ "system": RXNORM, "code": def.rxnorm, "display": def.display }],
                "text": def.display,
            },
            "status": "active",
        }));
        medications.insert(def.rxnorm, id.clone());
        id
    }
}
