//! Clinical vocabulary the generator draws from: code systems, conditions, medications, labs,
//! vaccines, allergens and procedures, each with the real-world codes and displays Epic sends.

/// LOINC.
pub(super) const LOINC: &str = "http://loinc.org";
/// UCUM units.
pub(super) const UCUM: &str = "http://unitsofmeasure.org";
/// SNOMED CT.
pub(super) const SNOMED: &str = "http://snomed.info/sct";
/// ICD-10-CM.
pub(super) const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
/// RxNorm.
pub(super) const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
/// CDC vaccine codes.
pub(super) const CVX: &str = "http://hl7.org/fhir/sid/cvx";
/// AMA CPT.
pub(super) const CPT: &str = "http://www.ama-assn.org/go/cpt";
/// National Provider Identifier.
pub(super) const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
/// Epic's sandbox MRN identifier system.
pub(super) const EPIC_MRN: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0";
/// Epic's contact serial number (CSN) system for encounters.
pub(super) const EPIC_CSN: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8";
/// HL7 observation categories.
pub(super) const OBSERVATION_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";
/// HL7 observation interpretation codes (H, L, N, POS, NEG).
pub(super) const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// A coding: system, code and display.
#[derive(Debug, Clone, Copy)]
pub(super) struct Code {
    pub(super) system: &'static str,
    pub(super) code: &'static str,
    pub(super) display: &'static str,
}

const fn snomed(code: &'static str, display: &'static str) -> Code {
    Code {
        system: SNOMED,
        code,
        display,
    }
}

const fn icd(code: &'static str, display: &'static str) -> Code {
    Code {
        system: ICD10CM,
        code,
        display,
    }
}

/// A condition the generator can put on a problem list or diagnose at a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cond {
    Hypertension,
    Diabetes2,
    Prediabetes,
    Hyperlipidemia,
    Asthma,
    MildPersistentAsthma,
    AsthmaExacerbation,
    AllergicRhinitis,
    Obesity,
    Hypothyroidism,
    Gerd,
    Depression,
    Anxiety,
    KneeOsteoarthritis,
    Ckd3,
    AtrialFibrillation,
    Copd,
    Migraine,
    Anemia,
    HeartFailure,
    CoronaryDisease,
    ViralSinusitis,
    AcuteBronchitis,
    StrepThroat,
    OtitisMedia,
    UrinaryInfection,
    AnkleSprain,
    LowBackPain,
    Pneumonia,
    Cellulitis,
    Gastroenteritis,
    Influenza,
    Covid19,
}

/// Codes and label of a condition: one SNOMED CT and one ICD-10-CM coding, as Epic sends both.
#[derive(Debug, Clone, Copy)]
pub(super) struct CondDef {
    pub(super) snomed: Code,
    pub(super) icd10: Code,
    pub(super) text: &'static str,
}

impl Cond {
    /// Chronic conditions the synthetic population draws from.
    pub(super) const CHRONIC: [Self; 19] = [
        Self::Hypertension,
        Self::Diabetes2,
        Self::Prediabetes,
        Self::Hyperlipidemia,
        Self::Asthma,
        Self::AllergicRhinitis,
        Self::Hypothyroidism,
        Self::Gerd,
        Self::Depression,
        Self::Anxiety,
        Self::KneeOsteoarthritis,
        Self::Ckd3,
        Self::AtrialFibrillation,
        Self::Copd,
        Self::Migraine,
        Self::Anemia,
        Self::HeartFailure,
        Self::CoronaryDisease,
        Self::Obesity,
    ];

    pub(super) fn def(self) -> CondDef {
        let (s, i, text) = match self {
            Self::Hypertension => (
                snomed("38341003", "Hypertensive disorder, systemic arterial"),
                icd("I10", "Essential (primary) hypertension"),
                "Hypertension",
            ),
            Self::Diabetes2 => (
                snomed("44054006", "Diabetes mellitus type 2"),
                icd("E11.9", "Type 2 diabetes mellitus without complications"),
                "Type 2 diabetes mellitus",
            ),
            Self::Prediabetes => (
                snomed("15777000", "Prediabetes"),
                icd("R73.03", "Prediabetes"),
                "Prediabetes",
            ),
            Self::Hyperlipidemia => (
                snomed("55822004", "Hyperlipidemia"),
                icd("E78.5", "Hyperlipidemia, unspecified"),
                "Hyperlipidemia",
            ),
            Self::Asthma => (
                snomed("195967001", "Asthma"),
                icd("J45.909", "Unspecified asthma, uncomplicated"),
                "Asthma",
            ),
            Self::MildPersistentAsthma => (
                snomed("426979002", "Mild persistent asthma"),
                icd("J45.30", "Mild persistent asthma, uncomplicated"),
                "Mild persistent asthma",
            ),
            Self::AsthmaExacerbation => (
                snomed("708038006", "Acute exacerbation of asthma"),
                icd("J45.901", "Unspecified asthma with (acute) exacerbation"),
                "Asthma exacerbation",
            ),
            Self::AllergicRhinitis => (
                snomed("61582004", "Allergic rhinitis"),
                icd("J30.9", "Allergic rhinitis, unspecified"),
                "Allergic rhinitis",
            ),
            Self::Obesity => (
                snomed("414916001", "Obesity"),
                icd("E66.9", "Obesity, unspecified"),
                "Obesity",
            ),
            Self::Hypothyroidism => (
                snomed("40930008", "Hypothyroidism"),
                icd("E03.9", "Hypothyroidism, unspecified"),
                "Hypothyroidism",
            ),
            Self::Gerd => (
                snomed("235595009", "Gastroesophageal reflux disease"),
                icd(
                    "K21.9",
                    "Gastro-esophageal reflux disease without esophagitis",
                ),
                "GERD",
            ),
            Self::Depression => (
                snomed("35489007", "Depressive disorder"),
                icd(
                    "F32.9",
                    "Major depressive disorder, single episode, unspecified",
                ),
                "Depression",
            ),
            Self::Anxiety => (
                snomed("21897009", "Generalized anxiety disorder"),
                icd("F41.1", "Generalized anxiety disorder"),
                "Generalized anxiety disorder",
            ),
            Self::KneeOsteoarthritis => (
                snomed("239873007", "Osteoarthritis of knee"),
                icd("M17.9", "Osteoarthritis of knee, unspecified"),
                "Osteoarthritis of knee",
            ),
            Self::Ckd3 => (
                snomed("433144002", "Chronic kidney disease stage 3"),
                icd("N18.30", "Chronic kidney disease, stage 3 unspecified"),
                "CKD stage 3",
            ),
            Self::AtrialFibrillation => (
                snomed("49436004", "Atrial fibrillation"),
                icd("I48.91", "Unspecified atrial fibrillation"),
                "Atrial fibrillation",
            ),
            Self::Copd => (
                snomed("13645005", "Chronic obstructive lung disease"),
                icd(
                    "J44.9",
                    "Chronic obstructive pulmonary disease, unspecified",
                ),
                "COPD",
            ),
            Self::Migraine => (
                snomed("37796009", "Migraine"),
                icd(
                    "G43.909",
                    "Migraine, unspecified, not intractable, without status migrainosus",
                ),
                "Migraine",
            ),
            Self::Anemia => (
                snomed("271737000", "Anemia"),
                icd("D64.9", "Anemia, unspecified"),
                "Anemia",
            ),
            Self::HeartFailure => (
                snomed("84114007", "Heart failure"),
                icd("I50.9", "Heart failure, unspecified"),
                "Heart failure",
            ),
            Self::CoronaryDisease => (
                snomed("53741008", "Coronary arteriosclerosis"),
                icd(
                    "I25.10",
                    "Atherosclerotic heart disease of native coronary artery without angina pectoris",
                ),
                "Coronary artery disease",
            ),
            Self::ViralSinusitis => (
                snomed("444814009", "Viral sinusitis"),
                icd("J01.90", "Acute sinusitis, unspecified"),
                "Sinusitis",
            ),
            Self::AcuteBronchitis => (
                snomed("10509002", "Acute bronchitis"),
                icd("J20.9", "Acute bronchitis, unspecified"),
                "Acute bronchitis",
            ),
            Self::StrepThroat => (
                snomed("43878008", "Streptococcal sore throat"),
                icd("J02.0", "Streptococcal pharyngitis"),
                "Strep throat",
            ),
            Self::OtitisMedia => (
                snomed("65363002", "Otitis media"),
                icd("H66.90", "Otitis media, unspecified, unspecified ear"),
                "Otitis media",
            ),
            Self::UrinaryInfection => (
                snomed("68566005", "Urinary tract infectious disease"),
                icd("N39.0", "Urinary tract infection, site not specified"),
                "Urinary tract infection",
            ),
            Self::AnkleSprain => (
                snomed("44465007", "Sprain of ankle"),
                icd(
                    "S93.409A",
                    "Sprain of unspecified ligament of unspecified ankle, initial encounter",
                ),
                "Ankle sprain",
            ),
            Self::LowBackPain => (
                snomed("279039007", "Low back pain"),
                icd("M54.50", "Low back pain, unspecified"),
                "Low back pain",
            ),
            Self::Pneumonia => (
                snomed("233604007", "Pneumonia"),
                icd("J18.9", "Pneumonia, unspecified organism"),
                "Pneumonia",
            ),
            Self::Cellulitis => (
                snomed("128045006", "Cellulitis"),
                icd("L03.90", "Cellulitis, unspecified"),
                "Cellulitis",
            ),
            Self::Gastroenteritis => (
                snomed("25374005", "Gastroenteritis"),
                icd(
                    "K52.9",
                    "Noninfective gastroenteritis and colitis, unspecified",
                ),
                "Gastroenteritis",
            ),
            Self::Influenza => (
                snomed("6142004", "Influenza"),
                icd(
                    "J11.1",
                    "Influenza due to unidentified influenza virus with other respiratory manifestations",
                ),
                "Influenza",
            ),
            Self::Covid19 => (
                snomed(
                    "840539006",
                    "Disease caused by severe acute respiratory syndrome coronavirus 2",
                ),
                icd("U07.1", "COVID-19"),
                "COVID-19",
            ),
        };
        CondDef {
            snomed: s,
            icd10: i,
            text,
        }
    }
}

/// How a medication is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Oral,
    Inhaled,
    Subcutaneous,
    Intramuscular,
    Sublingual,
}

impl Route {
    pub(super) fn code(self) -> Code {
        match self {
            Self::Oral => snomed("26643006", "Oral route"),
            Self::Inhaled => snomed("447694001", "Respiratory tract route"),
            Self::Subcutaneous => snomed("34206005", "Subcutaneous route"),
            Self::Intramuscular => snomed("78421000", "Intramuscular route"),
            Self::Sublingual => snomed("37839007", "Sublingual route"),
        }
    }
}

/// A medication the generator prescribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Med {
    Amlodipine,
    Lisinopril,
    Hydrochlorothiazide,
    Metformin,
    Insulin7030,
    Atorvastatin,
    Simvastatin,
    Albuterol,
    Fluticasone,
    Levothyroxine,
    Sertraline,
    Fluoxetine,
    Naproxen,
    Acetaminophen,
    Warfarin,
    Clopidogrel,
    Nitroglycerin,
    Cetirizine,
    Ibuprofen,
    Amoxicillin250,
    Amoxicillin500,
    PenicillinV,
    AmoxClav,
    SulfaTrimethoprim,
    Ondansetron,
    Medroxyprogesterone,
}

/// RxNorm code, display and a structured dosage for a medication.
#[derive(Debug, Clone, Copy)]
pub(super) struct MedDef {
    pub(super) rxnorm: &'static str,
    pub(super) display: &'static str,
    pub(super) instruction: &'static str,
    pub(super) route: Route,
    /// Dose per administration with its unit and UCUM code.
    pub(super) dose: (f64, &'static str, &'static str),
    /// Timing: administrations per period, the period and its UCUM unit (`d`, `h`, `wk`).
    pub(super) timing: (u32, u32, &'static str),
    pub(super) as_needed: bool,
    /// Length of a course in days for short (acute) treatments; `None` for long-term therapy.
    pub(super) course_days: Option<u32>,
    /// Units dispensed per fill.
    pub(super) dispense: (u32, &'static str),
}

impl Med {
    pub(super) fn def(self) -> MedDef {
        const TAB: (&str, &str) = ("tablet", "{tbl}");
        const CAP: (&str, &str) = ("capsule", "{capsule}");
        const PUFF: (&str, &str) = ("puff", "{puff}");
        let daily = (1, 1, "d");
        let tab = |n: f64| (n, TAB.0, TAB.1);
        let cap = |n: f64| (n, CAP.0, CAP.1);
        let m = |rxnorm,
                 display,
                 instruction,
                 route,
                 dose,
                 timing,
                 as_needed,
                 course_days,
                 dispense| MedDef {
            rxnorm,
            display,
            instruction,
            route,
            dose,
            timing,
            as_needed,
            course_days,
            dispense,
        };
        match self {
            Self::Amlodipine => m(
                "197361",
                "amlodipine 5 MG Oral Tablet",
                "Take 1 tablet (5 mg total) by mouth daily.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (90, "tablet"),
            ),
            Self::Lisinopril => m(
                "314076",
                "lisinopril 10 MG Oral Tablet",
                "Take 1 tablet (10 mg total) by mouth daily.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (90, "tablet"),
            ),
            Self::Hydrochlorothiazide => m(
                "310798",
                "hydrochlorothiazide 25 MG Oral Tablet",
                "Take 1 tablet (25 mg total) by mouth every morning.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (90, "tablet"),
            ),
            Self::Metformin => m(
                "860975",
                "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
                "Take 1 tablet (500 mg total) by mouth daily with evening meal.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (90, "tablet"),
            ),
            Self::Insulin7030 => m(
                "106892",
                "insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML Injectable Suspension",
                "Inject 20 Units under the skin 2 times daily before breakfast and dinner.",
                Route::Subcutaneous,
                (20.0, "Units", "[IU]"),
                (2, 1, "d"),
                false,
                None,
                (30, "mL"),
            ),
            Self::Atorvastatin => m(
                "617310",
                "atorvastatin 20 MG Oral Tablet",
                "Take 1 tablet (20 mg total) by mouth nightly.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (90, "tablet"),
            ),
            Self::Simvastatin => m(
                "312961",
                "simvastatin 20 MG Oral Tablet",
                "Take 1 tablet (20 mg total) by mouth nightly.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (90, "tablet"),
            ),
            Self::Albuterol => m(
                "745679",
                "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
                "Inhale 2 puffs into the lungs every 4 hours as needed for wheezing or shortness of breath.",
                Route::Inhaled,
                (2.0, PUFF.0, PUFF.1),
                (1, 4, "h"),
                true,
                None,
                (1, "inhaler"),
            ),
            Self::Fluticasone => m(
                "895994",
                "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
                "Inhale 2 puffs into the lungs 2 times daily. Rinse mouth after use.",
                Route::Inhaled,
                (2.0, PUFF.0, PUFF.1),
                (2, 1, "d"),
                false,
                None,
                (1, "inhaler"),
            ),
            Self::Levothyroxine => m(
                "966222",
                "levothyroxine sodium 0.075 MG Oral Tablet",
                "Take 1 tablet (75 mcg total) by mouth every morning before breakfast.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (90, "tablet"),
            ),
            Self::Sertraline => m(
                "312938",
                "sertraline 100 MG Oral Tablet",
                "Take 1 tablet (100 mg total) by mouth daily.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (30, "tablet"),
            ),
            Self::Fluoxetine => m(
                "310385",
                "fluoxetine 20 MG Oral Capsule",
                "Take 1 capsule (20 mg total) by mouth daily.",
                Route::Oral,
                cap(1.0),
                daily,
                false,
                None,
                (30, "capsule"),
            ),
            Self::Naproxen => m(
                "849574",
                "naproxen sodium 220 MG Oral Tablet",
                "Take 1 tablet (220 mg total) by mouth every 12 hours as needed for pain. Take with food.",
                Route::Oral,
                tab(1.0),
                (1, 12, "h"),
                true,
                None,
                (60, "tablet"),
            ),
            Self::Acetaminophen => m(
                "313782",
                "acetaminophen 325 MG Oral Tablet",
                "Take 2 tablets (650 mg total) by mouth every 6 hours as needed for pain.",
                Route::Oral,
                tab(2.0),
                (1, 6, "h"),
                true,
                None,
                (100, "tablet"),
            ),
            Self::Warfarin => m(
                "855332",
                "warfarin sodium 5 MG Oral Tablet",
                "Take 1 tablet (5 mg total) by mouth daily or as directed by the anticoagulation clinic.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (30, "tablet"),
            ),
            Self::Clopidogrel => m(
                "309362",
                "clopidogrel 75 MG Oral Tablet",
                "Take 1 tablet (75 mg total) by mouth daily.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (90, "tablet"),
            ),
            Self::Nitroglycerin => m(
                "705129",
                "nitroglycerin 0.4 MG/ACTUAT Mucosal Spray",
                "Spray 1 spray under the tongue every 5 minutes as needed for chest pain, up to 3 doses.",
                Route::Sublingual,
                (1.0, "spray", "{spray}"),
                (1, 5, "min"),
                true,
                None,
                (1, "bottle"),
            ),
            Self::Cetirizine => m(
                "1014676",
                "cetirizine hydrochloride 5 MG Oral Tablet",
                "Take 1 tablet (5 mg total) by mouth daily.",
                Route::Oral,
                tab(1.0),
                daily,
                false,
                None,
                (30, "tablet"),
            ),
            Self::Ibuprofen => m(
                "310965",
                "ibuprofen 200 MG Oral Tablet",
                "Take 2 tablets (400 mg total) by mouth every 6 hours as needed for pain.",
                Route::Oral,
                tab(2.0),
                (1, 6, "h"),
                true,
                Some(10),
                (40, "tablet"),
            ),
            Self::Amoxicillin250 => m(
                "308182",
                "amoxicillin 250 MG Oral Capsule",
                "Take 1 capsule (250 mg total) by mouth 3 times daily for 10 days.",
                Route::Oral,
                cap(1.0),
                (3, 1, "d"),
                false,
                Some(10),
                (30, "capsule"),
            ),
            Self::Amoxicillin500 => m(
                "308192",
                "amoxicillin 500 MG Oral Tablet",
                "Take 1 tablet (500 mg total) by mouth 2 times daily for 10 days.",
                Route::Oral,
                tab(1.0),
                (2, 1, "d"),
                false,
                Some(10),
                (20, "tablet"),
            ),
            Self::PenicillinV => m(
                "834061",
                "penicillin V potassium 250 MG Oral Tablet",
                "Take 1 tablet (250 mg total) by mouth 4 times daily for 10 days.",
                Route::Oral,
                tab(1.0),
                (4, 1, "d"),
                false,
                Some(10),
                (40, "tablet"),
            ),
            Self::AmoxClav => m(
                "562251",
                "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet",
                "Take 1 tablet by mouth every 8 hours for 7 days.",
                Route::Oral,
                tab(1.0),
                (1, 8, "h"),
                false,
                Some(7),
                (21, "tablet"),
            ),
            Self::SulfaTrimethoprim => m(
                "198335",
                "sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet",
                "Take 1 tablet by mouth 2 times daily for 3 days.",
                Route::Oral,
                tab(1.0),
                (2, 1, "d"),
                false,
                Some(3),
                (6, "tablet"),
            ),
            Self::Ondansetron => m(
                "104894",
                "ondansetron 4 MG Disintegrating Oral Tablet",
                "Dissolve 1 tablet (4 mg total) on the tongue every 8 hours as needed for nausea.",
                Route::Oral,
                tab(1.0),
                (1, 8, "h"),
                true,
                Some(5),
                (10, "tablet"),
            ),
            Self::Medroxyprogesterone => m(
                "1000126",
                "1 ML medroxyprogesterone acetate 150 MG/ML Injection",
                "Inject 1 mL (150 mg total) into the muscle every 3 months.",
                Route::Intramuscular,
                (1.0, "mL", "mL"),
                (1, 13, "wk"),
                false,
                None,
                (1, "mL"),
            ),
        }
    }
}

/// A laboratory test with a numeric result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lab {
    Glucose,
    UreaNitrogen,
    Creatinine,
    Sodium,
    Potassium,
    Chloride,
    Calcium,
    Hemoglobin,
    Leukocytes,
    Platelets,
    HbA1c,
    Cholesterol,
    Triglycerides,
    Hdl,
}

// Per-lab arrays are sized by `Lab::COUNT` and indexed by discriminant: keep them in step.
const _: () = assert!(Lab::Hdl as usize + 1 == Lab::COUNT);

/// LOINC code, labels, UCUM unit and result precision of a lab test.
#[derive(Debug, Clone, Copy)]
pub(super) struct LabDef {
    pub(super) loinc: &'static str,
    pub(super) display: &'static str,
    pub(super) text: &'static str,
    pub(super) unit: &'static str,
    pub(super) decimals: u8,
}

impl Lab {
    /// Number of lab tests, for per-patient arrays indexed by [`Lab::index`].
    pub(super) const COUNT: usize = 14;
    /// Basic metabolic panel.
    pub(super) const BMP: [Self; 7] = [
        Self::Glucose,
        Self::UreaNitrogen,
        Self::Creatinine,
        Self::Sodium,
        Self::Potassium,
        Self::Chloride,
        Self::Calcium,
    ];
    /// Complete blood count (the parts the sandbox reports).
    pub(super) const CBC: [Self; 3] = [Self::Hemoglobin, Self::Leukocytes, Self::Platelets];
    /// Lipid panel.
    pub(super) const LIPIDS: [Self; 3] = [Self::Cholesterol, Self::Triglycerides, Self::Hdl];

    pub(super) fn index(self) -> usize {
        self as usize
    }

    pub(super) fn def(self) -> LabDef {
        let (loinc, display, text, unit, decimals) = match self {
            Self::Glucose => (
                "2345-7",
                "Glucose [Mass/volume] in Serum or Plasma",
                "Glucose",
                "mg/dL",
                0,
            ),
            Self::UreaNitrogen => (
                "3094-0",
                "Urea nitrogen [Mass/volume] in Serum or Plasma",
                "BUN",
                "mg/dL",
                0,
            ),
            Self::Creatinine => (
                "2160-0",
                "Creatinine [Mass/volume] in Serum or Plasma",
                "Creatinine",
                "mg/dL",
                2,
            ),
            Self::Sodium => (
                "2951-2",
                "Sodium [Moles/volume] in Serum or Plasma",
                "Sodium",
                "mmol/L",
                0,
            ),
            Self::Potassium => (
                "2823-3",
                "Potassium [Moles/volume] in Serum or Plasma",
                "Potassium",
                "mmol/L",
                1,
            ),
            Self::Chloride => (
                "2075-0",
                "Chloride [Moles/volume] in Serum or Plasma",
                "Chloride",
                "mmol/L",
                0,
            ),
            Self::Calcium => (
                "17861-6",
                "Calcium [Mass/volume] in Serum or Plasma",
                "Calcium",
                "mg/dL",
                1,
            ),
            Self::Hemoglobin => (
                "718-7",
                "Hemoglobin [Mass/volume] in Blood",
                "Hemoglobin",
                "g/dL",
                1,
            ),
            Self::Leukocytes => (
                "6690-2",
                "Leukocytes [#/volume] in Blood by Automated count",
                "WBC",
                "10*3/uL",
                1,
            ),
            Self::Platelets => (
                "777-3",
                "Platelets [#/volume] in Blood by Automated count",
                "Platelets",
                "10*3/uL",
                0,
            ),
            Self::HbA1c => (
                "4548-4",
                "Hemoglobin A1c/Hemoglobin.total in Blood",
                "Hemoglobin A1C",
                "%",
                1,
            ),
            Self::Cholesterol => (
                "2093-3",
                "Cholesterol [Mass/volume] in Serum or Plasma",
                "Cholesterol",
                "mg/dL",
                0,
            ),
            Self::Triglycerides => (
                "2571-8",
                "Triglyceride [Mass/volume] in Serum or Plasma",
                "Triglycerides",
                "mg/dL",
                0,
            ),
            Self::Hdl => (
                "2085-9",
                "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
                "HDL Cholesterol",
                "mg/dL",
                0,
            ),
        };
        LabDef {
            loinc,
            display,
            text,
            unit,
            decimals,
        }
    }

    /// Adult reference range `(low, high)`; either end may be open.
    pub(super) fn reference_range(self, female: bool) -> (Option<f64>, Option<f64>) {
        match self {
            Self::Glucose => (Some(70.0), Some(99.0)),
            Self::UreaNitrogen => (Some(7.0), Some(20.0)),
            Self::Creatinine if female => (Some(0.59), Some(1.04)),
            Self::Creatinine => (Some(0.74), Some(1.35)),
            Self::Sodium => (Some(135.0), Some(145.0)),
            Self::Potassium => (Some(3.5), Some(5.1)),
            Self::Chloride => (Some(98.0), Some(107.0)),
            Self::Calcium => (Some(8.6), Some(10.3)),
            Self::Hemoglobin if female => (Some(11.6), Some(15.0)),
            Self::Hemoglobin => (Some(13.2), Some(16.6)),
            Self::Leukocytes => (Some(4.0), Some(11.0)),
            Self::Platelets => (Some(150.0), Some(400.0)),
            Self::HbA1c => (Some(4.0), Some(5.6)),
            Self::Cholesterol => (None, Some(200.0)),
            Self::Triglycerides => (None, Some(150.0)),
            Self::Hdl => (Some(40.0), None),
        }
    }
}

/// A vaccine, identified by its CVX code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Vaccine {
    HepB,
    DTaP,
    Ipv,
    Hib,
    Pcv13,
    Rotavirus,
    Mmr,
    Varicella,
    HepA,
    Influenza,
    Tdap,
    Hpv9,
    MenAcwy,
    Td,
    Ppsv23,
    Zoster,
    Covid19,
}

/// How a vaccine is given: `IM`, `SQ` (v3 RouteOfAdministration) or `PO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VaccineRoute {
    Intramuscular,
    Subcutaneous,
    Oral,
}

impl Vaccine {
    /// CVX code, CVX short description, route and dose in mL.
    pub(super) fn def(self) -> (&'static str, &'static str, VaccineRoute, f64) {
        use VaccineRoute::{Intramuscular as Im, Oral, Subcutaneous as Sq};
        match self {
            Self::HepB => ("08", "Hep B, adolescent or pediatric", Im, 0.5),
            Self::DTaP => ("20", "DTaP", Im, 0.5),
            Self::Ipv => ("10", "IPV", Im, 0.5),
            Self::Hib => ("49", "Hib (PRP-OMP)", Im, 0.5),
            Self::Pcv13 => ("133", "Pneumococcal conjugate PCV 13", Im, 0.5),
            Self::Rotavirus => ("116", "rotavirus, pentavalent", Oral, 2.0),
            Self::Mmr => ("03", "MMR", Sq, 0.5),
            Self::Varicella => ("21", "varicella", Sq, 0.5),
            Self::HepA => ("83", "Hep A, ped/adol, 2 dose", Im, 0.5),
            Self::Influenza => (
                "140",
                "Influenza, seasonal, injectable, preservative free",
                Im,
                0.5,
            ),
            Self::Tdap => ("115", "Tdap", Im, 0.5),
            Self::Hpv9 => ("165", "HPV9", Im, 0.5),
            Self::MenAcwy => ("114", "meningococcal MCV4P", Im, 0.5),
            Self::Td => ("113", "Td (adult) preservative free", Im, 0.5),
            Self::Ppsv23 => ("33", "pneumococcal polysaccharide PPV23", Im, 0.5),
            Self::Zoster => ("187", "zoster recombinant", Im, 0.5),
            Self::Covid19 => (
                "208",
                "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose",
                Im,
                0.3,
            ),
        }
    }
}

/// The CDC childhood schedule: age in days at the visit and the vaccines given then.
pub(super) const CHILDHOOD_SCHEDULE: [(i64, &[Vaccine]); 15] = [
    (4, &[Vaccine::HepB]),
    (
        61,
        &[
            Vaccine::DTaP,
            Vaccine::Ipv,
            Vaccine::Hib,
            Vaccine::Pcv13,
            Vaccine::Rotavirus,
            Vaccine::HepB,
        ],
    ),
    (
        122,
        &[
            Vaccine::DTaP,
            Vaccine::Ipv,
            Vaccine::Hib,
            Vaccine::Pcv13,
            Vaccine::Rotavirus,
        ],
    ),
    (
        183,
        &[
            Vaccine::DTaP,
            Vaccine::Pcv13,
            Vaccine::Rotavirus,
            Vaccine::HepB,
        ],
    ),
    (274, &[]),
    (
        365,
        &[
            Vaccine::Mmr,
            Vaccine::Varicella,
            Vaccine::HepA,
            Vaccine::Pcv13,
            Vaccine::Hib,
        ],
    ),
    (456, &[Vaccine::DTaP]),
    (548, &[Vaccine::HepA]),
    (730, &[]),
    (1095, &[]),
    (
        1461,
        &[
            Vaccine::DTaP,
            Vaccine::Ipv,
            Vaccine::Mmr,
            Vaccine::Varicella,
        ],
    ),
    (2191, &[]),
    (4018, &[Vaccine::Tdap, Vaccine::Hpv9, Vaccine::MenAcwy]),
    (4383, &[Vaccine::Hpv9]),
    (5844, &[Vaccine::MenAcwy]),
];

/// A substance a patient can be allergic or intolerant to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allergen {
    Penicillin,
    Amoxicillin,
    Sulfamethoxazole,
    Aspirin,
    Ibuprofen,
    Peanut,
    Shellfish,
    Egg,
    Latex,
    GrassPollen,
    DustMite,
}

/// Substance code, category, type and typical reactions of an allergen.
#[derive(Debug, Clone, Copy)]
pub(super) struct AllergenDef {
    pub(super) substance: Code,
    pub(super) category: &'static str,
    pub(super) kind: &'static str,
    pub(super) reactions: &'static [Code],
}

impl Allergen {
    pub(super) const ALL: [Self; 11] = [
        Self::Penicillin,
        Self::Amoxicillin,
        Self::Sulfamethoxazole,
        Self::Aspirin,
        Self::Ibuprofen,
        Self::Peanut,
        Self::Shellfish,
        Self::Egg,
        Self::Latex,
        Self::GrassPollen,
        Self::DustMite,
    ];

    pub(super) fn def(self) -> AllergenDef {
        const RASH: Code = snomed("271807003", "Eruption of skin");
        const HIVES: Code = snomed("247472004", "Wheal");
        const ANAPHYLAXIS: Code = snomed("39579001", "Anaphylaxis");
        const ITCHING: Code = snomed("418290006", "Itching");
        const NAUSEA: Code = snomed("422587007", "Nausea");
        const DYSPNEA: Code = snomed("267036007", "Dyspnea");
        const SNEEZING: Code = snomed("76067001", "Sneezing");
        const COUGH: Code = snomed("49727002", "Cough");
        const DERMATITIS: Code = snomed("40275004", "Contact dermatitis");
        let (substance, category, kind, reactions): (Code, _, _, &'static [Code]) = match self {
            Self::Penicillin => (
                snomed("764146007", "Penicillin"),
                "medication",
                "allergy",
                &[HIVES, RASH],
            ),
            Self::Amoxicillin => (
                snomed("372687004", "Amoxicillin"),
                "medication",
                "allergy",
                &[RASH],
            ),
            Self::Sulfamethoxazole => (
                snomed("387406002", "Sulfamethoxazole"),
                "medication",
                "allergy",
                &[RASH, ITCHING],
            ),
            Self::Aspirin => (
                snomed("387458008", "Aspirin"),
                "medication",
                "allergy",
                &[HIVES, DYSPNEA],
            ),
            Self::Ibuprofen => (
                snomed("387207008", "Ibuprofen"),
                "medication",
                "intolerance",
                &[NAUSEA],
            ),
            Self::Peanut => (
                snomed("762952008", "Peanut"),
                "food",
                "allergy",
                &[ANAPHYLAXIS, HIVES],
            ),
            Self::Shellfish => (
                snomed("735029006", "Shellfish"),
                "food",
                "allergy",
                &[HIVES, ITCHING],
            ),
            Self::Egg => (
                snomed("102263004", "Eggs (edible)"),
                "food",
                "allergy",
                &[HIVES, NAUSEA],
            ),
            Self::Latex => (
                snomed("111088007", "Latex"),
                "environment",
                "allergy",
                &[DERMATITIS],
            ),
            Self::GrassPollen => (
                snomed("256277009", "Grass pollen"),
                "environment",
                "allergy",
                &[SNEEZING, ITCHING],
            ),
            Self::DustMite => (
                snomed("260147004", "House dust mite"),
                "environment",
                "allergy",
                &[SNEEZING, COUGH],
            ),
        };
        AllergenDef {
            substance,
            category,
            kind,
            reactions,
        }
    }
}

/// A procedure the generator records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proc {
    Colonoscopy,
    Electrocardiogram,
    ChestXray,
    Spirometry,
}

/// SNOMED and CPT codings, category and duration of a procedure.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcDef {
    pub(super) snomed: Code,
    pub(super) cpt: Code,
    pub(super) category: Code,
    pub(super) minutes: i64,
}

impl Proc {
    pub(super) fn def(self) -> ProcDef {
        const DIAGNOSTIC: Code = snomed("103693007", "Diagnostic procedure");
        const IMAGING: Code = snomed("363679005", "Imaging");
        let cpt = |code, display| Code {
            system: CPT,
            code,
            display,
        };
        match self {
            Self::Colonoscopy => ProcDef {
                snomed: snomed("73761001", "Colonoscopy"),
                cpt: cpt("45378", "Colonoscopy, flexible; diagnostic"),
                category: DIAGNOSTIC,
                minutes: 40,
            },
            Self::Electrocardiogram => ProcDef {
                snomed: snomed("29303009", "Electrocardiographic procedure"),
                cpt: cpt(
                    "93000",
                    "Electrocardiogram, routine ECG with at least 12 leads; with interpretation and report",
                ),
                category: DIAGNOSTIC,
                minutes: 10,
            },
            Self::ChestXray => ProcDef {
                snomed: snomed("399208008", "Plain chest X-ray"),
                cpt: cpt("71046", "Radiologic examination, chest; 2 views"),
                category: IMAGING,
                minutes: 15,
            },
            Self::Spirometry => ProcDef {
                snomed: snomed("127783003", "Spirometry"),
                cpt: cpt(
                    "94010",
                    "Spirometry, including graphic record, total and timed vital capacity, expiratory flow rate measurement(s)",
                ),
                category: DIAGNOSTIC,
                minutes: 20,
            },
        }
    }
}

/// Tobacco smoking status (US Core value set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Smoking {
    Never,
    Former,
    EveryDay,
    SomeDays,
}

impl Smoking {
    pub(super) fn code(self) -> Code {
        match self {
            Self::Never => snomed("266919005", "Never smoked tobacco"),
            Self::Former => snomed("8517006", "Ex-smoker"),
            Self::EveryDay => snomed("449868002", "Smokes tobacco daily"),
            Self::SomeDays => snomed("428041000124106", "Occasional tobacco smoker"),
        }
    }
}

/// A clinician's specialty, used for practitioners and appointment service types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Specialty {
    FamilyMedicine,
    Pediatrics,
    Emergency,
    Hospitalist,
    Cardiology,
    Endocrinology,
    Pulmonology,
}

impl Specialty {
    /// Practitioners every region staffs, in order.
    pub(super) const STAFF: [Self; 8] = [
        Self::FamilyMedicine,
        Self::FamilyMedicine,
        Self::Pediatrics,
        Self::Emergency,
        Self::Hospitalist,
        Self::Cardiology,
        Self::Endocrinology,
        Self::Pulmonology,
    ];

    /// SNOMED practice-setting code used as `Appointment.serviceType`.
    pub(super) fn code(self) -> Code {
        match self {
            Self::FamilyMedicine => snomed("394814009", "General practice"),
            Self::Pediatrics => snomed("394537008", "Pediatric specialty"),
            Self::Emergency => snomed("773568002", "Emergency medicine"),
            Self::Hospitalist => snomed("394802001", "General medicine"),
            Self::Cardiology => snomed("394579002", "Cardiology"),
            Self::Endocrinology => snomed("394583002", "Endocrinology"),
            Self::Pulmonology => snomed("418112009", "Pulmonary medicine"),
        }
    }

    /// Whether this specialist works at the hospital rather than the clinic.
    pub(super) fn hospital_based(self) -> bool {
        matches!(
            self,
            Self::Emergency | Self::Hospitalist | Self::Cardiology | Self::Pulmonology
        )
    }
}
