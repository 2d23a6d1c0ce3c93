//! Epic's named sandbox patients, with the ids, names, birth dates and sexes Epic's public
//! sandbox uses, and hand-written histories matching what Epic documents for each.
//!
//! The counts Epic's documentation promises are exact here (Camila's 10 encounters, Jason's 7
//! problems, 9 medication requests and 3 allergies, Jessica's 4 and 5, Warren's single lab and
//! single procedure); tests hold them to it. Dates are relative to the generation anchor so the
//! histories stay recent whatever `now` is configured.

use time::Date;
use time::macros::date;

use super::catalog::{
    Allergen, CHILDHOOD_SCHEDULE, Cond, Lab, Med, Proc, Smoking, Specialty, Vaccine,
};
use super::people::{Address, Directory, REGIONS};
use super::plan::{
    AllergyPlan, Episode, LabPolicy, MedPlan, MedStatus, Monitoring, OnsetStyle, Person,
    Physiology, Plan, Problem, ProblemStatus, Visit, VisitKind,
};
use super::rng::Rng;
use super::synthetic::{clinic_day, email};
use super::timefmt::{add_days, add_years};

/// One of Epic's named sandbox patients.
#[derive(Debug, Clone, Copy)]
pub(super) struct NamedSpec {
    pub(super) id: &'static str,
    pub(super) given: &'static [&'static str],
    pub(super) family: &'static str,
    pub(super) birth: Date,
    pub(super) female: bool,
    pub(super) mrn: &'static str,
    /// Writes the patient's documented history into the plan.
    history: fn(&mut Named<'_>),
}

/// Epic's named patients, in the order of Epic's documentation.
pub(super) const NAMED: [NamedSpec; 7] = [
    NamedSpec {
        id: "eq081-VQEgP8drUUqCWzHfw3",
        given: &["Derrick"],
        family: "Lin",
        birth: date!(1973 - 06 - 03),
        female: false,
        mrn: "E4005",
        history: |b| b.derrick(),
    },
    NamedSpec {
        id: "erXuFYUfucBZaryVksYEcMg3",
        given: &["Camila", "Maria"],
        family: "Lopez",
        birth: date!(1987 - 09 - 12),
        female: true,
        mrn: "E4007",
        history: |b| b.camila(),
    },
    NamedSpec {
        id: "eD.LxhDyX35TntF77l7etUA3",
        given: &["Jason"],
        family: "Argonaut",
        birth: date!(1985 - 08 - 01),
        female: false,
        mrn: "E4001",
        history: |b| b.jason(),
    },
    NamedSpec {
        id: "evYS76EX6LLeCX2PlRLhvwg3",
        given: &["Jessica"],
        family: "Argonaut",
        birth: date!(1985 - 08 - 01),
        female: true,
        mrn: "E4002",
        history: |b| b.jessica(),
    },
    NamedSpec {
        id: "eAB3mDIBBcyUKviyzrxsnAw3",
        given: &["Desiree", "Caroline"],
        family: "Powell",
        birth: date!(2014 - 11 - 14),
        female: true,
        mrn: "E4003",
        history: |b| b.desiree(),
    },
    NamedSpec {
        id: "eIXesllypH3M9tAA5WdJftQ3",
        given: &["Linda", "Jane"],
        family: "Ross",
        birth: date!(1969 - 04 - 27),
        female: true,
        mrn: "E4004",
        history: |b| b.linda(),
    },
    NamedSpec {
        id: "e0w0LEDCYtfckT6N.CkJKCw3",
        given: &["Warren", "James"],
        family: "McGinnis",
        birth: date!(1952 - 05 - 24),
        female: false,
        mrn: "E4006",
        history: |b| b.warren(),
    },
];

/// The earliest anchor the named histories fit: Desiree Powell must be at least a year old.
pub(super) const EARLIEST_NOW: Date = date!(2016 - 01 - 01);

/// Builds the plan of one named patient for the anchor date `today`.
pub(super) fn plan(spec: &NamedSpec, rng: &mut Rng, today: Date, directory: &Directory) -> Plan {
    let mut b = Named::new(spec, rng, today, directory);
    (spec.history)(&mut b);
    let mut plan = b.plan;
    // The single lab is pinned to a visit by its index before sorting. Its date alone would
    // not do: another visit can fall on the same day (a yearly physical, say).
    let single_lab = b
        .single_lab
        .map(|(pinned, lab)| (sorted_position(&plan.visits, pinned), lab));
    plan.sort_visits();
    if let Some((visit, lab)) = single_lab {
        plan.labs = LabPolicy::Single { visit, lab };
    }
    plan
}

/// Where the stable sort by date in [`Plan::sort_visits`] moves the visit at `index`: after
/// every earlier visit and after the visits on the same day that were added before it.
fn sorted_position(visits: &[Visit], index: usize) -> usize {
    let Some(date) = visits.get(index).map(|v| v.date) else {
        return index;
    };
    visits
        .iter()
        .enumerate()
        .filter(|&(i, v)| v.date < date || (v.date == date && i < index))
        .count()
}

struct Named<'a> {
    rng: &'a mut Rng,
    today: Date,
    plan: Plan,
    /// The one lab result of a patient who has exactly one: the index of its visit in
    /// `plan.visits` (in the order the visits were added) and the test.
    single_lab: Option<(usize, Lab)>,
}

impl<'a> Named<'a> {
    fn new(spec: &NamedSpec, rng: &'a mut Rng, today: Date, directory: &Directory) -> Self {
        // Every named patient lives in the Wisconsin region, near Epic.
        let region = 0;
        let address = Address::random(rng, &REGIONS[region]);
        let phone = address.phone(rng);
        let first = spec.given.first().copied().unwrap_or("Patient");
        let adult = add_years(spec.birth, 18) <= today;
        let email = adult.then(|| email(rng, first, spec.family));
        let pcp = if adult {
            directory.staff(region, Specialty::FamilyMedicine, 0)
        } else {
            directory.staff(region, Specialty::Pediatrics, 0)
        };
        let person = Person {
            id: spec.id.to_owned(),
            mrn: spec.mrn.to_owned(),
            given: spec.given.to_vec(),
            family: spec.family,
            female: spec.female,
            birth: spec.birth,
            region,
            address,
            phone,
            email,
            language: ("en", "English"),
            pcp,
        };
        let physiology = Physiology::random(rng, spec.female);
        let plan = Plan {
            person,
            physiology,
            record_start: spec.birth,
            problems: Vec::new(),
            other_meds: Vec::new(),
            visits: Vec::new(),
            allergies: Vec::new(),
            labs: LabPolicy::Standard,
            smoking: None,
            monitoring: None,
            appointments: true,
        };
        Self {
            rng,
            today,
            plan,
            single_lab: None,
        }
    }

    /// About `years` years before the anchor; a few weeks of jitter keep the dates from all
    /// falling on the anchor's day of the year.
    fn years_ago(&mut self, years: i32) -> Date {
        let jitter = self.rng.range(0, 45);
        add_days(add_years(self.today, -years), -jitter).max(self.plan.person.birth)
    }

    fn days_ago(&self, days: i64) -> Date {
        add_days(self.today, -days).max(self.plan.person.birth)
    }

    fn visit(&mut self, date: Date, kind: VisitKind) -> &mut Visit {
        let day = clinic_day(date, self.plan.record_start, self.today);
        self.plan.visits.push(Visit::new(day, kind));
        let last = self.plan.visits.len() - 1;
        &mut self.plan.visits[last]
    }

    /// One physical a year for `years` years, in October so the flu shot is given there too.
    fn yearly_physicals(&mut self, years: i32, flu: bool) {
        for back in 1..=years {
            let year = self.today.year() - back;
            let day = self.rng.range(1, 28) as u8;
            let Ok(date) = Date::from_calendar_date(year, time::Month::October, day) else {
                continue;
            };
            if date < self.plan.record_start {
                continue;
            }
            let visit = self.visit(date, VisitKind::Physical);
            if flu {
                visit.vaccines.push(Vaccine::Influenza);
            }
        }
    }

    /// `per_year` follow-ups a year for `years` years, for a reason.
    fn follow_ups(&mut self, years: i32, per_year: i64, reason: Cond, specialist: bool) {
        for back in 0..i64::from(years) {
            for n in 0..per_year {
                let days = back * 365 + 30 + n * (365 / per_year.max(1)) + self.rng.range(0, 60);
                let date = self.days_ago(days);
                if date < self.plan.record_start {
                    continue;
                }
                let visit = self.visit(date, VisitKind::FollowUp);
                visit.reason = Some(reason);
                visit.specialist = specialist;
            }
        }
    }

    fn problem(&mut self, cond: Cond, onset: Date, style: OnsetStyle) -> &mut Problem {
        self.plan.problems.push(Problem::new(cond, onset, style));
        let last = self.plan.problems.len() - 1;
        &mut self.plan.problems[last]
    }

    fn med(med: Med, start: Date, status: MedStatus) -> MedPlan {
        MedPlan {
            med,
            start,
            status,
            intent_plan: false,
        }
    }

    fn planned(&mut self, days_ahead: i64, reason: Option<Cond>) {
        let date = super::timefmt::weekday_on_or_before(add_days(self.today, days_ahead));
        self.plan.visits.push(Visit {
            reason,
            ..Visit::new(date, VisitKind::Planned)
        });
    }

    /// Derrick Lin: hypertension and hyperlipidemia, two years of daily home readings.
    fn derrick(&mut self) {
        self.plan.record_start = self.years_ago(12);
        self.plan.smoking = Some(Smoking::Former);
        let htn = self.years_ago(11);
        let switched = self.years_ago(6);
        let statin = self.years_ago(8);
        self.problem(Cond::Hypertension, htn, OnsetStyle::Date).meds = vec![
            Self::med(Med::Lisinopril, htn, MedStatus::Stopped(switched)),
            Self::med(Med::Amlodipine, switched, MedStatus::Active),
        ];
        self.problem(Cond::Hyperlipidemia, statin, OnsetStyle::YearMonth)
            .meds = vec![Self::med(Med::Atorvastatin, statin, MedStatus::Active)];
        self.yearly_physicals(12, true);
        self.follow_ups(11, 2, Cond::Hypertension, false);
        let days = 730;
        self.plan.monitoring = Some(Monitoring {
            start: self.days_ago(days),
            days,
        });
        self.planned(30, Some(Cond::Hypertension));
    }

    /// Camila Lopez: labs and vitals over exactly ten clinic visits.
    fn camila(&mut self) {
        self.plan.record_start = self.years_ago(7);
        self.plan.smoking = Some(Smoking::Never);
        let thyroid = self.years_ago(6);
        self.problem(Cond::Hypothyroidism, thyroid, OnsetStyle::Date)
            .meds = vec![Self::med(Med::Levothyroxine, thyroid, MedStatus::Active)];
        let prediabetes = self.years_ago(3);
        self.problem(Cond::Prediabetes, prediabetes, OnsetStyle::Date);
        for n in 0..10_i64 {
            let jitter = self.rng.range(0, 20);
            let date = self.days_ago(60 + n * 220 + jitter);
            let kind = if n % 2 == 0 {
                VisitKind::Physical
            } else {
                VisitKind::FollowUp
            };
            let visit = self.visit(date, kind);
            if kind == VisitKind::FollowUp {
                visit.reason = Some(if date >= prediabetes {
                    Cond::Prediabetes
                } else {
                    Cond::Hypothyroidism
                });
            }
            let month = visit.date.month() as u8;
            if (9..=12).contains(&month) {
                visit.vaccines.push(Vaccine::Influenza);
            }
        }
    }

    /// Jason Argonaut: 7 problems, 9 medication requests, 3 allergies.
    fn jason(&mut self) {
        self.plan.record_start = self.years_ago(9);
        self.plan.smoking = Some(Smoking::Never);
        let htn = self.years_ago(8);
        let hctz_stop = self.years_ago(5);
        self.problem(Cond::Hypertension, htn, OnsetStyle::Date).meds = vec![
            Self::med(Med::Hydrochlorothiazide, htn, MedStatus::Stopped(hctz_stop)),
            Self::med(Med::Lisinopril, hctz_stop, MedStatus::Active),
            Self::med(Med::Amlodipine, self.years_ago(3), MedStatus::Active),
        ];
        let dm = self.years_ago(6);
        self.problem(Cond::Diabetes2, dm, OnsetStyle::Instant).meds =
            vec![Self::med(Med::Metformin, dm, MedStatus::Active)];
        let hld = self.years_ago(7);
        self.problem(Cond::Hyperlipidemia, hld, OnsetStyle::YearMonth)
            .meds = vec![Self::med(Med::Atorvastatin, hld, MedStatus::Active)];
        let asthma = date!(1992 - 05 - 01).max(self.plan.person.birth);
        let start = self.plan.record_start;
        self.problem(Cond::Asthma, asthma, OnsetStyle::Year).meds = vec![
            Self::med(Med::Albuterol, start, MedStatus::Active),
            Self::med(Med::Fluticasone, start, MedStatus::Active),
        ];
        let rhinitis = date!(2001 - 04 - 01).max(self.plan.person.birth);
        self.problem(Cond::AllergicRhinitis, rhinitis, OnsetStyle::Period)
            .meds = vec![Self::med(Med::Cetirizine, start, MedStatus::Active)];
        let reflux = self.years_ago(4);
        self.problem(Cond::Gerd, reflux, OnsetStyle::Date);
        let back = self.days_ago(4 * 365 + 100);
        let problem = self.problem(Cond::LowBackPain, back, OnsetStyle::Instant);
        problem.status = ProblemStatus::Resolved(add_days(back, 45));
        problem.meds = vec![Self::med(Med::Ibuprofen, back, MedStatus::Completed)];
        self.visit(back, VisitKind::Sick).reason = Some(Cond::LowBackPain);
        for (allergen, high) in [
            (Allergen::Penicillin, true),
            (Allergen::Peanut, true),
            (Allergen::GrassPollen, false),
        ] {
            let recorded = add_days(start, self.rng.range(10, 400));
            self.plan.allergies.push(AllergyPlan {
                allergen,
                recorded,
                high_criticality: high,
            });
        }
        self.yearly_physicals(9, true);
        self.follow_ups(8, 1, Cond::Diabetes2, true);
        self.follow_ups(8, 1, Cond::Hypertension, false);
        self.planned(21, Some(Cond::Diabetes2));
    }

    /// Jessica Argonaut: 4 problems, 5 medication requests.
    fn jessica(&mut self) {
        self.plan.record_start = self.years_ago(9);
        self.plan.smoking = Some(Smoking::Never);
        let start = self.plan.record_start;
        let thyroid = self.years_ago(7);
        self.problem(Cond::Hypothyroidism, thyroid, OnsetStyle::Date)
            .meds = vec![Self::med(Med::Levothyroxine, thyroid, MedStatus::Active)];
        let migraine = date!(2004 - 03 - 01).max(self.plan.person.birth);
        self.problem(Cond::Migraine, migraine, OnsetStyle::YearMonth)
            .meds = vec![Self::med(Med::Naproxen, start, MedStatus::Active)];
        let depression = self.years_ago(5);
        self.problem(Cond::Depression, depression, OnsetStyle::Instant)
            .meds = vec![Self::med(Med::Sertraline, depression, MedStatus::Active)];
        self.problem(Cond::AllergicRhinitis, start, OnsetStyle::Date)
            .meds = vec![Self::med(Med::Cetirizine, start, MedStatus::Active)];
        // Contraception is prescribed without a problem-list entry.
        let contraception = self.years_ago(2);
        self.plan.other_meds.push(MedPlan {
            med: Med::Medroxyprogesterone,
            start: contraception,
            status: MedStatus::Active,
            intent_plan: false,
        });
        self.yearly_physicals(9, true);
        self.follow_ups(5, 1, Cond::Depression, false);
    }

    /// Desiree Powell: a childhood of well-child visits and vaccines, two childhood illnesses,
    /// and a sick visit under way right now.
    fn desiree(&mut self) {
        self.plan.record_start = self.plan.person.birth;
        let birth = self.plan.person.birth;
        for (days, vaccines) in CHILDHOOD_SCHEDULE {
            let date = add_days(birth, days);
            if date >= self.today {
                continue;
            }
            self.visit(date, VisitKind::Physical).vaccines = vaccines.to_vec();
        }
        for years in [5, 7, 8, 9, 10] {
            let date = add_days(add_years(birth, years), 20);
            if date < self.today {
                self.visit(date, VisitKind::Physical);
            }
        }
        // A flu shot every autumn from her first, at a nurse visit.
        for year in (birth.year() + 1)..=self.today.year() {
            let Ok(date) = Date::from_calendar_date(year, time::Month::October, 12) else {
                continue;
            };
            if date < self.today {
                self.visit(date, VisitKind::Immunization)
                    .vaccines
                    .push(Vaccine::Influenza);
            }
        }
        for (years, cond, med) in [
            (2, Cond::OtitisMedia, Med::Amoxicillin250),
            (8, Cond::StrepThroat, Med::PenicillinV),
        ] {
            let date = add_days(add_years(birth, years), 75);
            if date < add_days(self.today, -30) {
                self.visit(date, VisitKind::Sick).episode = Some(Episode {
                    cond,
                    med: Some(med),
                    resolves_after_days: 10,
                });
            }
        }
        let today = self.today;
        self.plan
            .visits
            .push(Visit::new(today, VisitKind::InProgress));
        self.planned(45, None);
    }

    /// Linda Ross: lifelong asthma, now mild persistent, with one exacerbation seen in the ED.
    fn linda(&mut self) {
        self.plan.record_start = self.years_ago(10);
        self.plan.smoking = Some(Smoking::Never);
        let childhood = date!(1978 - 06 - 01).max(self.plan.person.birth);
        self.problem(Cond::Asthma, childhood, OnsetStyle::Year);
        let persistent = self.years_ago(7);
        self.problem(Cond::MildPersistentAsthma, persistent, OnsetStyle::Date)
            .meds = vec![
            Self::med(Med::Fluticasone, persistent, MedStatus::Active),
            Self::med(Med::Albuterol, persistent, MedStatus::Active),
        ];
        let flare = self.days_ago(3 * 365 + 40);
        let visit = self.visit(flare, VisitKind::Emergency);
        visit.reason = Some(Cond::AsthmaExacerbation);
        let flare = visit.date;
        self.problem(Cond::AsthmaExacerbation, flare, OnsetStyle::Instant)
            .status = ProblemStatus::Resolved(add_days(flare, 21));
        self.yearly_physicals(10, true);
        self.follow_ups(7, 1, Cond::MildPersistentAsthma, true);
        self.planned(60, Some(Cond::MildPersistentAsthma));
    }

    /// Warren McGinnis: vital signs at his visits, one lab and one procedure.
    fn warren(&mut self) {
        self.plan.record_start = self.years_ago(8);
        self.plan.smoking = Some(Smoking::Former);
        let start = self.plan.record_start;
        self.problem(Cond::Hypertension, date!(2009 - 02 - 01), OnsetStyle::Year)
            .meds = vec![Self::med(Med::Amlodipine, start, MedStatus::Active)];
        self.yearly_physicals(8, true);
        self.follow_ups(6, 1, Cond::Hypertension, false);
        let procedure_day = self.days_ago(2 * 365 + 10);
        let visit = self.visit(procedure_day, VisitKind::Procedure);
        visit.procedure = Some(Proc::Colonoscopy);
        let pre_op = add_days(visit.date, -14);
        self.visit(pre_op, VisitKind::FollowUp).reason = Some(Cond::Hypertension);
        self.single_lab = Some((self.plan.visits.len() - 1, Lab::Hemoglobin));
    }
}
