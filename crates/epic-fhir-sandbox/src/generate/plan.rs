//! A patient's plan: every fact the renderer turns into resources, decided up front.
//!
//! Plans are built either by hand (Epic's named patients, whose counts must be exact) or at
//! random (the synthetic population). The renderer adds only timing and measured values, so a
//! plan alone fixes how many Encounters, Conditions, MedicationRequests, allergies,
//! immunizations and procedures a patient gets.

use time::Date;

use super::catalog::{Allergen, Cond, Lab, Med, Proc, Smoking, Vaccine};
use super::people::Address;
use super::rng::Rng;
use super::timefmt;

/// Demographics.
#[derive(Debug, Clone)]
pub(super) struct Person {
    pub(super) id: String,
    pub(super) mrn: String,
    pub(super) given: Vec<&'static str>,
    pub(super) family: &'static str,
    pub(super) female: bool,
    pub(super) birth: Date,
    pub(super) region: usize,
    pub(super) address: Address,
    pub(super) phone: String,
    pub(super) email: Option<String>,
    /// Language tag (BCP 47) and its display.
    pub(super) language: (&'static str, &'static str),
    /// Directory index of the primary care practitioner.
    pub(super) pcp: usize,
}

impl Person {
    pub(super) fn display_name(&self) -> String {
        let mut name = self.given.join(" ");
        name.push(' ');
        name.push_str(self.family);
        name
    }
}

/// How a problem's onset is written: FHIR allows several precisions and a Period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnsetStyle {
    Year,
    YearMonth,
    Date,
    Instant,
    Period,
}

/// Clinical status of a problem list entry over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProblemStatus {
    Active,
    /// No longer bothering the patient, no end date recorded.
    Inactive,
    /// Resolved on this date.
    Resolved(Date),
}

/// What happens to a prescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MedStatus {
    Active,
    /// Stopped on this date (replaced or not tolerated).
    Stopped(Date),
    /// A finished short course.
    Completed,
}

/// A prescription written for a problem or an episode.
#[derive(Debug, Clone)]
pub(super) struct MedPlan {
    pub(super) med: Med,
    pub(super) start: Date,
    pub(super) status: MedStatus,
    /// `order` for most, `plan` for medications the clinician intends to start.
    pub(super) intent_plan: bool,
}

/// A problem list entry.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    pub(super) cond: Cond,
    pub(super) onset: Date,
    pub(super) onset_style: OnsetStyle,
    pub(super) status: ProblemStatus,
    pub(super) meds: Vec<MedPlan>,
}

impl Problem {
    pub(super) fn new(cond: Cond, onset: Date, onset_style: OnsetStyle) -> Self {
        Self {
            cond,
            onset,
            onset_style,
            status: ProblemStatus::Active,
            meds: Vec::new(),
        }
    }

    /// Whether the problem is present on a date.
    pub(super) fn active_on(&self, date: Date) -> bool {
        self.onset <= date
            && match self.status {
                ProblemStatus::Resolved(end) => date < end,
                ProblemStatus::Active | ProblemStatus::Inactive => true,
            }
    }

    /// Whether a medication for the problem is being taken on a date.
    pub(super) fn treated_on(&self, date: Date) -> bool {
        self.meds.iter().any(|m| {
            m.start <= date
                && match m.status {
                    MedStatus::Active => true,
                    MedStatus::Stopped(end) => date < end,
                    MedStatus::Completed => false,
                }
        })
    }
}

/// The kind of visit, which decides the Encounter class, type, length and what is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VisitKind {
    /// Annual physical (adults) or well-child check.
    Physical,
    /// Follow-up of chronic problems.
    FollowUp,
    /// Same-day visit for an acute problem.
    Sick,
    /// Nurse visit for vaccines only.
    Immunization,
    /// Outpatient procedure visit.
    Procedure,
    Emergency,
    /// Admission lasting this many days.
    Inpatient(u8),
    /// Video visit.
    Telehealth,
    /// A visit under way at the generation anchor (no end).
    InProgress,
    /// A future, booked visit.
    Planned,
}

impl VisitKind {
    /// Visits booked ahead of time, which get an Appointment.
    pub(super) fn scheduled(self) -> bool {
        matches!(
            self,
            Self::Physical
                | Self::FollowUp
                | Self::Procedure
                | Self::Telehealth
                | Self::Immunization
                | Self::Planned
        )
    }

    /// Visits in a clinic or hospital, where vital signs are taken.
    pub(super) fn in_person(self) -> bool {
        !matches!(self, Self::Telehealth | Self::Planned | Self::Immunization)
    }
}

/// An acute problem diagnosed at a visit (an `encounter-diagnosis` Condition).
#[derive(Debug, Clone)]
pub(super) struct Episode {
    pub(super) cond: Cond,
    pub(super) med: Option<Med>,
    pub(super) resolves_after_days: i64,
}

/// One visit.
#[derive(Debug, Clone)]
pub(super) struct Visit {
    pub(super) date: Date,
    pub(super) kind: VisitKind,
    /// The reason recorded on the Encounter, when there is one.
    pub(super) reason: Option<Cond>,
    pub(super) episode: Option<Episode>,
    pub(super) vaccines: Vec<Vaccine>,
    pub(super) procedure: Option<Proc>,
    /// Whether the specialist for the reason sees the patient instead of the PCP.
    pub(super) specialist: bool,
}

impl Visit {
    pub(super) fn new(date: Date, kind: VisitKind) -> Self {
        Self {
            date,
            kind,
            reason: None,
            episode: None,
            vaccines: Vec::new(),
            procedure: None,
            specialist: false,
        }
    }
}

/// Which lab tests are drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LabPolicy {
    /// Labs as clinical routine dictates (panels at physicals, disease monitoring, ED work-up).
    Standard,
    /// Exactly one result: this lab at the visit with this index.
    Single { visit: usize, lab: Lab },
}

/// Home monitoring: daily readings uploaded from devices.
#[derive(Debug, Clone, Copy)]
pub(super) struct Monitoring {
    pub(super) start: Date,
    pub(super) days: i64,
}

/// An allergy on the patient's record.
#[derive(Debug, Clone)]
pub(super) struct AllergyPlan {
    pub(super) allergen: Allergen,
    pub(super) recorded: Date,
    pub(super) high_criticality: bool,
}

/// Per-patient baselines the measured values drift around.
#[derive(Debug, Clone)]
pub(super) struct Physiology {
    /// Adult height in cm.
    pub(super) adult_height: f64,
    /// Body size relative to the median (1.0), kept through childhood.
    pub(super) bmi_factor: f64,
    /// BMI gained per year of adulthood.
    pub(super) bmi_drift: f64,
    pub(super) systolic: f64,
    pub(super) diastolic: f64,
    /// Systolic pressure gained per year of adulthood.
    pub(super) pressure_drift: f64,
    pub(super) heart_rate: f64,
    pub(super) temperature: f64,
    pub(super) spo2: f64,
    /// Per-lab offset in standard deviations, so each patient runs a little high or low.
    pub(super) lab_bias: [f64; Lab::COUNT],
}

impl Physiology {
    pub(super) fn random(rng: &mut Rng, female: bool) -> Self {
        let adult_height = if female {
            rng.normal(163.0, 6.5)
        } else {
            rng.normal(176.5, 7.0)
        };
        let mut lab_bias = [0.0; Lab::COUNT];
        for bias in &mut lab_bias {
            *bias = rng.normal(0.0, 0.7);
        }
        Self {
            adult_height,
            bmi_factor: rng.normal(1.04, 0.12).clamp(0.8, 1.5),
            bmi_drift: rng.normal(0.13, 0.08).clamp(-0.05, 0.3),
            systolic: rng.normal(114.0, 7.0),
            diastolic: rng.normal(73.0, 5.0),
            pressure_drift: rng.normal(0.45, 0.2).clamp(0.0, 1.0),
            heart_rate: rng.normal(71.0, 7.0),
            temperature: rng.normal(36.8, 0.15),
            spo2: rng.normal(97.8, 0.7).clamp(95.0, 99.5),
            lab_bias,
        }
    }

    /// Median BMI at an age: the CDC growth-chart median through childhood, then adult drift.
    pub(super) fn bmi_at(&self, age: f64) -> f64 {
        const CHILD: [(f64, f64); 14] = [
            (0.0, 13.4),
            (0.5, 17.0),
            (1.0, 17.2),
            (2.0, 16.4),
            (3.0, 15.8),
            (4.0, 15.5),
            (5.0, 15.3),
            (6.0, 15.4),
            (8.0, 16.0),
            (10.0, 17.0),
            (12.0, 18.0),
            (14.0, 19.4),
            (16.0, 20.5),
            (18.0, 21.5),
        ];
        if age < 18.0 {
            let median = interpolate(&CHILD, age);
            // Children keep roughly their percentile; the adult factor applies gently.
            median * (1.0 + (self.bmi_factor - 1.0) * 0.6)
        } else {
            let adult_years = (age.min(65.0) - 18.0).max(0.0);
            let elderly_loss = (age - 75.0).max(0.0) * 0.08;
            (21.5 * self.bmi_factor + adult_years * self.bmi_drift - elderly_loss).clamp(15.0, 55.0)
        }
    }

    /// Height in cm at an age (growth as a fraction of adult height; slight loss after 60).
    pub(super) fn height_at(&self, age: f64) -> f64 {
        const GROWTH: [(f64, f64); 12] = [
            (0.0, 0.29),
            (1.0, 0.43),
            (2.0, 0.50),
            (4.0, 0.59),
            (6.0, 0.67),
            (8.0, 0.74),
            (10.0, 0.80),
            (12.0, 0.86),
            (14.0, 0.93),
            (16.0, 0.98),
            (18.0, 1.0),
            (200.0, 1.0),
        ];
        let shrink = (age - 60.0).max(0.0) * 0.1;
        self.adult_height * interpolate(&GROWTH, age) - shrink
    }
}

/// Piecewise-linear interpolation over points sorted by x, clamped at both ends.
fn interpolate(points: &[(f64, f64)], x: f64) -> f64 {
    let Some(&(first_x, first_y)) = points.first() else {
        return 0.0;
    };
    if x <= first_x {
        return first_y;
    }
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x <= x1 {
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
        }
    }
    points.last().map_or(first_y, |p| p.1)
}

/// Everything about one patient.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) person: Person,
    pub(super) physiology: Physiology,
    /// The first day of the patient's record in this system.
    pub(super) record_start: Date,
    pub(super) problems: Vec<Problem>,
    /// Prescriptions written without a problem-list reason (contraception, for instance).
    pub(super) other_meds: Vec<MedPlan>,
    /// Visits sorted by date.
    pub(super) visits: Vec<Visit>,
    pub(super) allergies: Vec<AllergyPlan>,
    pub(super) labs: LabPolicy,
    pub(super) smoking: Option<Smoking>,
    pub(super) monitoring: Option<Monitoring>,
    /// Whether past visits get Appointments, with a few cancelled and missed ones.
    pub(super) appointments: bool,
}

impl Plan {
    /// Whether a condition is on the problem list and active on a date.
    pub(super) fn has(&self, cond: Cond, date: Date) -> bool {
        self.problems
            .iter()
            .any(|p| p.cond == cond && p.active_on(date))
    }

    /// Whether a condition is active and treated on a date.
    pub(super) fn treated(&self, cond: Cond, date: Date) -> bool {
        self.problems
            .iter()
            .any(|p| p.cond == cond && p.active_on(date) && p.treated_on(date))
    }

    /// Age in fractional years on a date.
    pub(super) fn age(&self, date: Date) -> f64 {
        timefmt::age_years(self.person.birth, date)
    }

    /// Sorts visits by date, keeping the given order for visits on the same day.
    pub(super) fn sort_visits(&mut self) {
        self.visits.sort_by_key(|v| v.date);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_curves_are_plausible() {
        let mut rng = Rng::new(1);
        let p = Physiology::random(&mut rng, true);
        assert!((p.height_at(0.0) - p.adult_height * 0.29).abs() < 1e-9);
        assert!(p.height_at(10.0) < p.height_at(14.0));
        assert!((p.height_at(30.0) - p.adult_height).abs() < 1e-9);
        assert!(p.height_at(80.0) < p.adult_height);
        assert!(p.bmi_at(0.0) < p.bmi_at(1.0));
        assert!((15.0..=55.0).contains(&p.bmi_at(50.0)));
    }

    #[test]
    fn problem_activity_follows_status() {
        let onset = time::macros::date!(2020 - 01 - 01);
        let mut problem = Problem::new(Cond::LowBackPain, onset, OnsetStyle::Date);
        problem.status = ProblemStatus::Resolved(time::macros::date!(2020 - 02 - 01));
        assert!(!problem.active_on(time::macros::date!(2019 - 12 - 31)));
        assert!(problem.active_on(time::macros::date!(2020 - 01 - 15)));
        assert!(!problem.active_on(time::macros::date!(2020 - 02 - 01)));
    }
}
