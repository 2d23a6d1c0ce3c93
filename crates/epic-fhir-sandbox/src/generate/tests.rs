//! Tests of the whole generator: determinism, Epic's named patients, referential integrity and
//! the shape of the clinical data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::Value;
use time::macros::date;

use super::{GenerateConfig, GenerateError, GenerateSummary, generate};

/// Generates a data set into a vector.
fn run(config: &GenerateConfig) -> (GenerateSummary, Vec<Value>) {
    let mut out = Vec::new();
    let summary = match generate(config, &mut |r| out.push(r)) {
        Ok(summary) => summary,
        Err(e) => panic!("generation failed: {e}"),
    };
    (summary, out)
}

/// The default 100-patient data set, generated once for all tests that only read it.
fn default_set() -> &'static (GenerateSummary, Vec<Value>) {
    static SET: OnceLock<(GenerateSummary, Vec<Value>)> = OnceLock::new();
    SET.get_or_init(|| run(&GenerateConfig::default()))
}

fn of_type<'a>(resources: &'a [Value], resource_type: &'a str) -> impl Iterator<Item = &'a Value> {
    resources
        .iter()
        .filter(move |r| r["resourceType"] == resource_type)
}

/// The Patient a resource is about (`subject` or `patient`), as `Patient/id`.
fn patient_of(resource: &Value) -> Option<&str> {
    resource["subject"]["reference"]
        .as_str()
        .or_else(|| resource["patient"]["reference"].as_str())
}

/// Resources of one type about one patient.
fn count_for(resources: &[Value], resource_type: &str, patient_id: &str) -> usize {
    let wanted = format!("Patient/{patient_id}");
    of_type(resources, resource_type)
        .filter(|r| patient_of(r) == Some(wanted.as_str()))
        .count()
}

fn codes(concept: &Value) -> Vec<(String, String)> {
    concept["coding"]
        .as_array()
        .map(|codings| {
            codings
                .iter()
                .map(|c| {
                    (
                        c["system"].as_str().unwrap_or_default().to_owned(),
                        c["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every `reference` string anywhere in a value.
fn collect_references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "reference" {
                    if let Some(s) = v.as_str() {
                        out.push(s);
                    }
                }
                collect_references(v, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_references(v, out);
            }
        }
        _ => {}
    }
}

const DERRICK: &str = "eq081-VQEgP8drUUqCWzHfw3";
const CAMILA: &str = "erXuFYUfucBZaryVksYEcMg3";
const JASON: &str = "eD.LxhDyX35TntF77l7etUA3";
const JESSICA: &str = "evYS76EX6LLeCX2PlRLhvwg3";
const DESIREE: &str = "eAB3mDIBBcyUKviyzrxsnAw3";
const LINDA: &str = "eIXesllypH3M9tAA5WdJftQ3";
const WARREN: &str = "e0w0LEDCYtfckT6N.CkJKCw3";

#[test]
fn same_seed_gives_identical_bytes_and_other_seeds_differ() {
    let config = GenerateConfig {
        patients: 25,
        ..GenerateConfig::default()
    };
    let serialize =
        |resources: &[Value]| -> Vec<String> { resources.iter().map(Value::to_string).collect() };
    let (summary_a, a) = run(&config);
    let (summary_b, b) = run(&config);
    assert_eq!(summary_a, summary_b);
    assert_eq!(serialize(&a), serialize(&b));

    let (_, c) = run(&GenerateConfig {
        seed: 2,
        ..config.clone()
    });
    assert_ne!(serialize(&a), serialize(&c));
    // Named patients keep their identity whatever the seed.
    let names = |rs: &[Value]| -> Vec<String> {
        of_type(rs, "Patient")
            .filter(|p| {
                p["identifier"][0]["value"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("E400"))
            })
            .map(|p| format!("{}|{}", p["id"], p["birthDate"]))
            .collect()
    };
    assert_eq!(names(&a), names(&c));
}

#[test]
fn more_patients_extend_without_changing_earlier_ones() {
    let (_, small) = run(&GenerateConfig {
        patients: 12,
        ..GenerateConfig::default()
    });
    let (_, large) = run(&GenerateConfig {
        patients: 20,
        ..GenerateConfig::default()
    });
    let patients =
        |rs: &[Value]| -> Vec<String> { of_type(rs, "Patient").map(Value::to_string).collect() };
    let small_patients = patients(&small);
    let large_patients = patients(&large);
    assert_eq!(small_patients.len(), 12);
    assert_eq!(large_patients.len(), 20);
    assert_eq!(small_patients[..], large_patients[..12]);
}

#[test]
fn counts_scale_with_the_number_of_patients() {
    let (few, _) = run(&GenerateConfig {
        patients: 10,
        ..GenerateConfig::default()
    });
    let (more, _) = run(&GenerateConfig {
        patients: 40,
        ..GenerateConfig::default()
    });
    assert_eq!(few.counts.get("Patient"), Some(&10));
    assert_eq!(more.counts.get("Patient"), Some(&40));
    assert!(
        more.total > few.total + 30 * 100,
        "{} vs {}",
        more.total,
        few.total
    );

    let (default, _) = default_set();
    assert_eq!(default.patients, 100);
    assert!(
        (20_000..=40_000).contains(&default.total),
        "100 patients give {} resources",
        default.total
    );
}

#[test]
fn fewer_than_seven_patients_still_gives_all_named_patients() {
    let (summary, resources) = run(&GenerateConfig {
        patients: 3,
        ..GenerateConfig::default()
    });
    assert_eq!(summary.patients, 7);
    assert_eq!(of_type(&resources, "Patient").count(), 7);
    assert_eq!(summary.named_patients.len(), 7);
}

#[test]
fn anchor_out_of_range_is_an_error() {
    let config = GenerateConfig {
        now: date!(2015 - 06 - 01),
        ..GenerateConfig::default()
    };
    let mut delivered = 0;
    let err = generate(&config, &mut |_| delivered += 1).err();
    assert!(
        matches!(err, Some(GenerateError::NowOutOfRange { .. })),
        "{err:?}"
    );
    assert_eq!(delivered, 0);
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("2015-06-01"), "{message}");
}

#[test]
fn named_patients_match_epics_sandbox() {
    let (summary, resources) = default_set();
    let expected = [
        (DERRICK, "Derrick Lin", "1973-06-03", "male", Some("E4005")),
        (
            CAMILA,
            "Camila Maria Lopez",
            "1987-09-12",
            "female",
            Some("E4007"),
        ),
        (JASON, "Jason Argonaut", "1985-08-01", "male", None),
        (JESSICA, "Jessica Argonaut", "1985-08-01", "female", None),
        (
            DESIREE,
            "Desiree Caroline Powell",
            "2014-11-14",
            "female",
            None,
        ),
        (LINDA, "Linda Jane Ross", "1969-04-27", "female", None),
        (WARREN, "Warren James McGinnis", "1952-05-24", "male", None),
    ];
    let patients: HashMap<&str, &Value> = of_type(resources, "Patient")
        .filter_map(|p| p["id"].as_str().map(|id| (id, p)))
        .collect();
    for (id, name, birth, gender, mrn) in expected {
        let Some(patient) = patients.get(id) else {
            panic!("{name} ({id}) is missing");
        };
        assert_eq!(patient["name"][0]["text"], name);
        assert_eq!(patient["birthDate"], birth);
        assert_eq!(patient["gender"], gender);
        let identifier = &patient["identifier"][0];
        assert_eq!(
            identifier["system"],
            "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0"
        );
        assert_eq!(identifier["type"]["coding"][0]["code"], "MR");
        if let Some(mrn) = mrn {
            assert_eq!(identifier["value"], mrn);
        }
        assert!(
            summary
                .named_patients
                .iter()
                .any(|n| n.id == id && n.name == name)
        );
    }
}

#[test]
fn named_patients_have_their_documented_data() {
    let (_, resources) = default_set();
    let observations_of = |id: &str, category: &str| {
        let wanted = format!("Patient/{id}");
        of_type(resources, "Observation")
            .filter(|o| patient_of(o) == Some(wanted.as_str()))
            .filter(|o| o["category"][0]["coding"][0]["code"] == category)
            .count()
    };

    let derrick = count_for(resources, "Observation", DERRICK);
    assert!(derrick > 2_500, "Derrick Lin has {derrick} Observations");
    assert!(observations_of(DERRICK, "vital-signs") > 2_500);

    assert_eq!(count_for(resources, "Encounter", CAMILA), 10);
    assert!(observations_of(CAMILA, "laboratory") > 10);
    assert!(observations_of(CAMILA, "vital-signs") > 10);

    assert_eq!(count_for(resources, "Condition", JASON), 7);
    assert_eq!(count_for(resources, "MedicationRequest", JASON), 9);
    assert_eq!(count_for(resources, "AllergyIntolerance", JASON), 3);

    assert_eq!(count_for(resources, "Condition", JESSICA), 4);
    assert_eq!(count_for(resources, "MedicationRequest", JESSICA), 5);

    assert!(observations_of(DESIREE, "vital-signs") > 10);
    assert!(count_for(resources, "Immunization", DESIREE) >= 20);
    let in_progress: Vec<&Value> = of_type(resources, "Encounter")
        .filter(|e| e["status"] == "in-progress")
        .collect();
    assert_eq!(in_progress.len(), 1, "exactly one visit is under way");
    assert_eq!(
        in_progress[0]["subject"]["reference"],
        format!("Patient/{DESIREE}")
    );
    assert!(in_progress[0]["period"]["start"].is_string());
    assert!(in_progress[0]["period"].get("end").is_none());

    let linda = format!("Patient/{LINDA}");
    let asthma: Vec<&Value> = of_type(resources, "Condition")
        .filter(|c| c["subject"]["reference"] == linda.as_str())
        .filter(|c| {
            c["code"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("sthma"))
        })
        .collect();
    assert!(asthma.len() >= 2, "Linda Ross has asthma problems");
    assert!(observations_of(LINDA, "vital-signs") > 10);

    assert_eq!(observations_of(WARREN, "laboratory"), 1);
    assert_eq!(count_for(resources, "Procedure", WARREN), 1);
    assert!(observations_of(WARREN, "vital-signs") > 10);
}

#[test]
fn every_reference_resolves_and_ids_are_epic_like() {
    let (_, resources) = default_set();
    let mut known = HashSet::new();
    for r in resources {
        let Some(resource_type) = r["resourceType"].as_str() else {
            panic!("resource without resourceType: {r}");
        };
        let Some(id) = r["id"].as_str() else {
            panic!("{resource_type} without id");
        };
        assert!(
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "invalid id {id}"
        );
        if resource_type != "Group" {
            assert!(
                (20..=60).contains(&id.len()) && id.starts_with('e') && id.ends_with('3'),
                "{resource_type} id {id} is not Epic-like"
            );
        }
        assert!(
            known.insert(format!("{resource_type}/{id}")),
            "duplicate {resource_type}/{id}"
        );
        assert!(
            r["meta"]["lastUpdated"].is_string(),
            "{resource_type}/{id} has no meta.lastUpdated"
        );
    }
    let mut checked = 0;
    for r in resources {
        let mut references = Vec::new();
        collect_references(r, &mut references);
        for reference in references {
            assert!(
                known.contains(reference),
                "dangling reference {reference} in {}",
                r["id"]
            );
            checked += 1;
        }
    }
    assert!(checked > 50_000, "only {checked} references checked");
}

#[test]
fn vital_signs_use_loinc_and_ucum_and_panels_have_two_components() {
    let (_, resources) = default_set();
    let expected_units: BTreeMap<&str, &str> = [
        ("8867-4", "/min"),
        ("9279-1", "/min"),
        ("8310-5", "Cel"),
        ("29463-7", "kg"),
        ("8302-2", "cm"),
        ("39156-5", "kg/m2"),
        ("59408-5", "%"),
    ]
    .into_iter()
    .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut panels = 0;
    for o in of_type(resources, "Observation") {
        if o["category"][0]["coding"][0]["code"] != "vital-signs" {
            continue;
        }
        assert_eq!(
            o["category"][0]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/observation-category"
        );
        assert_eq!(o["code"]["coding"][0]["system"], "http://loinc.org");
        let code = o["code"]["coding"][0]["code"].as_str().unwrap_or_default();
        *seen.entry(code.to_owned()).or_default() += 1;
        if code == "85354-9" {
            panels += 1;
            let components = o["component"].as_array().map(Vec::len);
            assert_eq!(components, Some(2));
            assert_eq!(o["component"][0]["code"]["coding"][0]["code"], "8480-6");
            assert_eq!(o["component"][1]["code"]["coding"][0]["code"], "8462-4");
            for c in 0..2 {
                let q = &o["component"][c]["valueQuantity"];
                assert_eq!(q["system"], "http://unitsofmeasure.org");
                assert_eq!(q["code"], "mm[Hg]");
                assert_eq!(q["unit"], "mm[Hg]");
            }
            let systolic = o["component"][0]["valueQuantity"]["value"]
                .as_f64()
                .unwrap_or(0.0);
            let diastolic = o["component"][1]["valueQuantity"]["value"]
                .as_f64()
                .unwrap_or(0.0);
            assert!(systolic > diastolic && (70.0..=220.0).contains(&systolic));
            continue;
        }
        let Some(unit) = expected_units.get(code) else {
            panic!("unexpected vital sign code {code}");
        };
        let q = &o["valueQuantity"];
        assert_eq!(q["system"], "http://unitsofmeasure.org");
        assert_eq!(q["code"], *unit, "{code}");
        assert_eq!(q["unit"], *unit, "{code}");
        assert!(q["value"].is_number());
    }
    for code in expected_units.keys().chain(["85354-9"].iter()) {
        assert!(
            seen.get(*code).copied().unwrap_or(0) > 100,
            "few {code}: {seen:?}"
        );
    }
    assert!(panels > 1000);
}

#[test]
fn labs_have_ranges_and_interpretations_and_other_value_types_exist() {
    let (_, resources) = default_set();
    let mut interpretations: BTreeMap<String, usize> = BTreeMap::new();
    let mut lab_codes = HashSet::new();
    let mut concept_values = 0;
    let mut string_values = 0;
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for o in of_type(resources, "Observation") {
        *statuses
            .entry(o["status"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        if o.get("valueCodeableConcept").is_some() {
            concept_values += 1;
        }
        if o.get("valueString").is_some() {
            string_values += 1;
        }
        if o["category"][0]["coding"][0]["code"] == "laboratory" && o.get("valueQuantity").is_some()
        {
            lab_codes.insert(
                o["code"]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            assert!(o["referenceRange"][0].is_object());
            let code = o["interpretation"][0]["coding"][0]["code"]
                .as_str()
                .unwrap_or_default();
            *interpretations.entry(code.to_owned()).or_default() += 1;
        }
    }
    for code in [
        "2345-7", "4548-4", "2160-0", "718-7", "2823-3", "2951-2", "2093-3",
    ] {
        assert!(lab_codes.contains(code), "no {code} results");
    }
    for code in ["H", "L", "N"] {
        assert!(
            interpretations.get(code).copied().unwrap_or(0) > 0,
            "{interpretations:?}"
        );
    }
    assert!(concept_values > 100, "{concept_values} coded values");
    assert!(string_values > 0, "no valueString observations");
    let total: usize = statuses.values().sum();
    let finals = statuses.get("final").copied().unwrap_or(0);
    assert!(finals * 100 > total * 90, "{statuses:?}");
    for status in ["amended", "preliminary"] {
        assert!(
            statuses.get(status).copied().unwrap_or(0) > 0,
            "{statuses:?}"
        );
    }
    let smoking = of_type(resources, "Observation")
        .filter(|o| o["code"]["coding"][0]["code"] == "72166-2")
        .inspect(|o| assert_eq!(o["category"][0]["coding"][0]["code"], "social-history"))
        .count();
    assert!(smoking > 50);
}

#[test]
fn effective_dates_vary_in_precision() {
    let (_, resources) = default_set();
    let (mut offset, mut zulu, mut date_only, mut period) = (0, 0, 0, 0);
    for o in of_type(resources, "Observation") {
        if let Some(t) = o["effectiveDateTime"].as_str() {
            match t.len() {
                10 => date_only += 1,
                20 if t.ends_with('Z') => zulu += 1,
                25 if t.ends_with(":00") && (t.contains("-0") || t.contains("+0")) => offset += 1,
                _ => panic!("unexpected dateTime {t}"),
            }
        } else if o["effectivePeriod"]["start"].is_string() {
            period += 1;
        } else {
            panic!("observation without effective[x]: {o}");
        }
    }
    let total = offset + zulu + date_only + period;
    assert!(
        offset * 2 > total,
        "most carry offsets: {offset} of {total}"
    );
    assert!(
        zulu > 100 && date_only > 100 && period > 50,
        "{zulu} {date_only} {period}"
    );
}

#[test]
fn conditions_carry_snomed_and_icd10() {
    let (_, resources) = default_set();
    let mut categories = HashSet::new();
    let mut statuses = HashSet::new();
    let mut onset_kinds = HashSet::new();
    for c in of_type(resources, "Condition") {
        let systems: Vec<String> = codes(&c["code"]).into_iter().map(|(s, _)| s).collect();
        assert!(systems.iter().any(|s| s == "http://snomed.info/sct"), "{c}");
        assert!(
            systems
                .iter()
                .any(|s| s == "http://hl7.org/fhir/sid/icd-10-cm"),
            "{c}"
        );
        assert_eq!(
            c["clinicalStatus"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/condition-clinical"
        );
        let status = c["clinicalStatus"]["coding"][0]["code"]
            .as_str()
            .unwrap_or_default();
        if status == "resolved" {
            assert!(
                c["abatementDateTime"].is_string(),
                "resolved without abatement: {c}"
            );
        }
        statuses.insert(status.to_owned());
        categories.insert(
            c["category"][0]["coding"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        assert!(c["recordedDate"].is_string());
        if let Some(onset) = c["onsetDateTime"].as_str() {
            onset_kinds.insert(match onset.len() {
                4 => "year",
                7 => "month",
                10 => "date",
                _ => "instant",
            });
        } else if c["onsetPeriod"].is_object() {
            onset_kinds.insert("period");
        }
    }
    for s in ["active", "resolved", "inactive"] {
        assert!(statuses.contains(s), "{statuses:?}");
    }
    for k in ["problem-list-item", "encounter-diagnosis"] {
        assert!(categories.contains(k), "{categories:?}");
    }
    for k in ["year", "month", "date", "instant", "period"] {
        assert!(onset_kinds.contains(k), "{onset_kinds:?}");
    }
}

#[test]
fn encounters_medications_and_appointments_are_well_formed() {
    let (_, resources) = default_set();
    let mut classes = HashSet::new();
    let mut statuses = HashSet::new();
    for e in of_type(resources, "Encounter") {
        assert_eq!(
            e["class"]["system"],
            "http://terminology.hl7.org/CodeSystem/v3-ActCode"
        );
        classes.insert(e["class"]["code"].as_str().unwrap_or_default().to_owned());
        statuses.insert(e["status"].as_str().unwrap_or_default().to_owned());
        assert!(e["type"][0]["coding"][0]["display"].is_string());
        assert!(e["participant"][0]["individual"]["reference"].is_string());
        assert!(e["serviceProvider"]["reference"].is_string());
        if e["status"] == "finished" {
            let start = e["period"]["start"].as_str().unwrap_or_default();
            let end = e["period"]["end"].as_str().unwrap_or_default();
            let parse = |t: &str| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            };
            match (parse(start), parse(end)) {
                (Ok(s), Ok(e)) => assert!(s <= e, "{start} after {end}"),
                _ => panic!("bad period {start} {end}"),
            }
        }
    }
    for c in ["AMB", "EMER", "IMP", "VR"] {
        assert!(classes.contains(c), "{classes:?}");
    }
    for s in ["finished", "in-progress", "planned"] {
        assert!(statuses.contains(s), "{statuses:?}");
    }

    let mut med_statuses = HashSet::new();
    for m in of_type(resources, "MedicationRequest") {
        let coding = &m["medicationCodeableConcept"]["coding"][0];
        assert_eq!(
            coding["system"],
            "http://www.nlm.nih.gov/research/umls/rxnorm"
        );
        assert!(
            coding["code"]
                .as_str()
                .is_some_and(|c| c.chars().all(|d| d.is_ascii_digit()))
        );
        assert!(m["dosageInstruction"][0]["text"].is_string());
        assert!(m["dosageInstruction"][0]["timing"]["repeat"]["period"].is_number());
        assert!(m["requester"]["reference"].is_string());
        assert!(m["authoredOn"].is_string());
        assert!(matches!(m["intent"].as_str(), Some("order" | "plan")));
        med_statuses.insert(m["status"].as_str().unwrap_or_default().to_owned());
    }
    for s in ["active", "completed", "stopped"] {
        assert!(med_statuses.contains(s), "{med_statuses:?}");
    }

    let mut appointment_statuses = HashSet::new();
    for a in of_type(resources, "Appointment") {
        appointment_statuses.insert(a["status"].as_str().unwrap_or_default().to_owned());
        let actors: Vec<&str> = a["participant"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["actor"]["reference"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(actors.iter().any(|r| r.starts_with("Patient/")));
        assert!(actors.iter().any(|r| r.starts_with("Practitioner/")));
        assert!(a["serviceType"][0]["coding"][0]["code"].is_string());
        assert!(a["start"].is_string() && a["end"].is_string());
    }
    for s in ["booked", "fulfilled", "cancelled", "noshow"] {
        assert!(appointment_statuses.contains(s), "{appointment_statuses:?}");
    }
    for t in [
        "AllergyIntolerance",
        "Immunization",
        "Procedure",
        "Organization",
        "Practitioner",
    ] {
        assert!(of_type(resources, t).count() > 0, "no {t}");
    }
}

#[test]
fn some_synthetic_patients_have_more_than_a_thousand_observations() {
    let (_, resources) = default_set();
    let mut per_patient: HashMap<&str, usize> = HashMap::new();
    for o in of_type(resources, "Observation") {
        if let Some(p) = patient_of(o) {
            *per_patient.entry(p).or_default() += 1;
        }
    }
    let heavy = per_patient
        .iter()
        .filter(|(p, n)| **n > 1_000 && !p.ends_with(DERRICK))
        .count();
    assert!(
        heavy >= 2,
        "{heavy} synthetic patients with more than 1000 Observations"
    );
}

#[test]
fn nothing_is_dated_after_the_anchor_except_bookings() {
    let (_, resources) = default_set();
    let anchor = "2026-11-01T15:00:00Z";
    for r in resources {
        let updated = r["meta"]["lastUpdated"].as_str().unwrap_or_default();
        assert!(
            updated.ends_with('Z') && updated < anchor,
            "lastUpdated {updated}"
        );
        if let Some(issued) = r["issued"].as_str() {
            assert!(issued < anchor, "issued {issued}");
        }
        if let Some(t) = r["effectiveDateTime"].as_str() {
            assert!(t < "2026-11-01T16", "effective {t}");
        }
    }
    // Booked visits lie ahead.
    assert!(
        of_type(resources, "Appointment")
            .filter(|a| a["status"] == "booked")
            .all(|a| a["start"].as_str().is_some_and(|s| s > anchor))
    );
}

#[test]
fn groups_cover_the_population() {
    let (summary, resources) = default_set();
    let groups: HashMap<&str, &Value> = of_type(resources, "Group")
        .filter_map(|g| g["id"].as_str().map(|id| (id, g)))
        .collect();
    assert_eq!(groups.len(), 4);
    assert_eq!(summary.groups.len(), 4);
    let all = &summary.groups[0];
    assert_eq!(all.name, "All sandbox patients");
    assert_eq!(all.members, 100);
    assert_eq!(summary.all_patients_group(), all.id);
    let Some(group) = groups.get(all.id.as_str()) else {
        panic!("all-patients group not emitted");
    };
    assert_eq!(group["type"], "person");
    assert_eq!(group["actual"], true);
    assert_eq!(group["member"].as_array().map(Vec::len), Some(100));
    for g in &summary.groups {
        assert!(groups.contains_key(g.id.as_str()));
        assert!(g.members > 0, "empty group {}", g.name);
    }
    let named = summary
        .groups
        .iter()
        .find(|g| g.name.contains("named"))
        .map(|g| g.members);
    assert_eq!(named, Some(7));
    // Ids are stable across seeds and sizes.
    let (other, _) = run(&GenerateConfig {
        seed: 99,
        patients: 8,
        ..GenerateConfig::default()
    });
    let ids = |s: &GenerateSummary| s.groups.iter().map(|g| g.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(summary), ids(&other));
}

#[test]
fn works_at_both_ends_of_the_anchor_range() {
    for now in [date!(2016 - 01 - 01), date!(2999 - 12 - 31)] {
        let (summary, resources) = run(&GenerateConfig {
            patients: 30,
            now,
            ..GenerateConfig::default()
        });
        assert_eq!(summary.patients, 30, "{now}");
        assert_eq!(count_for(&resources, "Encounter", CAMILA), 10, "{now}");
        assert_eq!(count_for(&resources, "Condition", JASON), 7, "{now}");
        assert_eq!(
            count_for(&resources, "MedicationRequest", JESSICA),
            5,
            "{now}"
        );
        assert_eq!(count_for(&resources, "Procedure", WARREN), 1, "{now}");
        let known: HashSet<String> = resources
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap_or_default(),
                    r["id"].as_str().unwrap_or_default()
                )
            })
            .collect();
        for r in &resources {
            let mut references = Vec::new();
            collect_references(r, &mut references);
            assert!(
                references
                    .iter()
                    .all(|reference| known.contains(*reference)),
                "{now}"
            );
        }
        let in_progress = of_type(&resources, "Encounter")
            .filter(|e| e["status"] == "in-progress")
            .count();
        assert_eq!(in_progress, 1, "{now}");
    }
}

#[test]
fn warrens_single_lab_is_drawn_at_his_pre_operative_visit() {
    // On 2024-10-26 one of Warren's yearly physicals falls on the day of his pre-operative
    // visit; the lab must still attach to the pre-operative follow-up, not to the physical.
    for now in [date!(2024 - 10 - 26), GenerateConfig::default().now] {
        let (_, resources) = run(&GenerateConfig {
            patients: 7,
            now,
            ..GenerateConfig::default()
        });
        let warren = format!("Patient/{WARREN}");
        let labs: Vec<&Value> = of_type(&resources, "Observation")
            .filter(|o| patient_of(o) == Some(warren.as_str()))
            .filter(|o| o["category"][0]["coding"][0]["code"] == "laboratory")
            .collect();
        assert_eq!(labs.len(), 1, "{now}");
        let encounter = labs[0]["encounter"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Encounter/"))
            .and_then(|id| of_type(&resources, "Encounter").find(|e| e["id"] == id));
        let Some(encounter) = encounter else {
            panic!("{now}: the lab's Encounter is missing");
        };
        assert_eq!(
            encounter["type"][0]["coding"][0]["code"], "390906007",
            "{now}: the lab is at {encounter}"
        );
        assert_eq!(encounter["reasonCode"][0]["text"], "Hypertension", "{now}");
    }
}

#[test]
fn a_huge_patient_count_reserves_nothing_up_front() {
    // Generation cannot be cancelled, so the sink stops it by panicking at the first Patient;
    // any earlier panic (such as a capacity overflow) carries another message.
    const STOP: &str = "stopped at the first patient";
    let config = GenerateConfig {
        patients: usize::MAX,
        ..GenerateConfig::default()
    };
    let outcome = std::panic::catch_unwind(|| {
        generate(&config, &mut |r| {
            assert_ne!(r["resourceType"], "Patient", "{STOP}");
        })
    });
    let Err(payload) = outcome else {
        panic!("generation of usize::MAX patients returned");
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(message.contains(STOP), "{message}");
}
