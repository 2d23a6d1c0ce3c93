//! Random plans for the synthetic population: demographics, chronic problems chosen by age and
//! sex, the visits they lead to, acute illnesses, vaccines, procedures and allergies.

use time::Date;
use time::macros::date;

use super::World;
use super::catalog::{Allergen, CHILDHOOD_SCHEDULE, Cond, Med, Proc, Smoking, Specialty, Vaccine};
use super::people::{
    Address, Directory, FAMILY, FEMALE_GIVEN, MALE_GIVEN, REGION_WEIGHTS, REGIONS,
};
use super::plan::{
    AllergyPlan, Episode, LabPolicy, MedPlan, MedStatus, Monitoring, OnsetStyle, Person,
    Physiology, Plan, Problem, ProblemStatus, Visit, VisitKind,
};
use super::rng::Rng;
use super::timefmt::{add_days, add_years, age_years, weekday_on_or_before};

/// One synthetic patient in this many is enrolled in remote monitoring and so has well over a
/// thousand Observations, which exercises paging across several 1000-entry pages.
pub(super) const HEAVY_EVERY: usize = 40;

/// Whether the synthetic patient with this index is one of the heavily monitored ones.
pub(super) fn is_heavy(index: usize) -> bool {
    index % HEAVY_EVERY == 8
}

/// The first day video visits are offered (the 2020 telehealth expansion).
const TELEHEALTH_FROM: Date = date!(2020 - 04 - 01);
/// The first day COVID-19 can be diagnosed.
const COVID_FROM: Date = date!(2020 - 03 - 15);

/// A uniformly random date in `[low, high)`, or `None` when the range is empty.
pub(super) fn date_between(rng: &mut Rng, low: Date, high: Date) -> Option<Date> {
    let span = (high - low).whole_days();
    (span > 0).then(|| add_days(low, rng.range(0, span - 1)))
}

/// Moves a date to a weekday while staying inside `[low, high)` when possible.
pub(super) fn clinic_day(date: Date, low: Date, high: Date) -> Date {
    let back = weekday_on_or_before(date);
    if back >= low {
        return back;
    }
    let forward = match (date - back).whole_days() {
        1 => add_days(date, 2),
        2 => add_days(date, 1),
        _ => date,
    };
    if forward < high { forward } else { date }
}

/// An e-mail address under the reserved `example.com` domain.
pub(super) fn email(rng: &mut Rng, given: &str, family: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                'é' | 'É' => 'e',
                other => other.to_ascii_lowercase(),
            })
            .filter(char::is_ascii_alphanumeric)
            .collect()
    };
    format!(
        "{}.{}{}@example.com",
        clean(given),
        clean(family),
        rng.range(1, 99)
    )
}

/// A complete random plan for synthetic patient number `index`.
pub(super) fn plan(
    rng: &mut Rng,
    index: usize,
    world: &mut World<'_>,
    directory: &Directory,
) -> Plan {
    let today = world.clock.today;
    let heavy = is_heavy(index);
    let female = rng.chance(0.51);
    let age = if heavy {
        rng.range(50, 84)
    } else {
        let bands: [((i64, i64), u32); 7] = [
            ((0, 4), 7),
            ((5, 17), 15),
            ((18, 34), 22),
            ((35, 49), 19),
            ((50, 64), 19),
            ((65, 79), 13),
            ((80, 95), 5),
        ];
        let (low, high) = *rng.weighted(&bands);
        rng.range(low, high)
    };
    let birth = add_days(add_years(today, -(age as i32)), -rng.range(1, 364));
    let pool = if female { FEMALE_GIVEN } else { MALE_GIVEN };
    let first = *rng.pick(pool);
    let mut given = vec![first];
    if rng.chance(0.4) {
        let middle = *rng.pick(pool);
        if middle != first {
            given.push(middle);
        }
    }
    let family = *rng.pick(FAMILY);
    let region = *rng.weighted(&REGION_WEIGHTS);
    let address = Address::random(rng, &REGIONS[region]);
    let phone = address.phone(rng);
    let email = (age >= 16 && rng.chance(0.55)).then(|| email(rng, first, family));
    let language = *rng.weighted(&[
        (("en", "English"), 90),
        (("es", "Spanish"), 7),
        (("vi", "Vietnamese"), 1),
        (("zh", "Chinese"), 1),
        (("so", "Somali"), 1),
    ]);
    let pcp = if age < 18 {
        directory.staff(region, Specialty::Pediatrics, 0)
    } else {
        directory.staff(region, Specialty::FamilyMedicine, rng.index(2))
    };
    let person = Person {
        id: world.ids.fresh(rng, "Patient"),
        mrn: format!("E{}", 5001 + index),
        given,
        family,
        female,
        birth,
        region,
        address,
        phone,
        email,
        language,
        pcp,
    };
    let physiology = Physiology::random(rng, female);
    let history_years = if heavy {
        rng.range(6, 12)
    } else {
        rng.range(3, 12)
    };
    let record_start = add_years(today, -(history_years as i32)).max(birth);
    let smoking = (age >= 13).then(|| {
        *rng.weighted(&[
            (Smoking::Never, 60),
            (Smoking::Former, 22),
            (Smoking::EveryDay, 13),
            (Smoking::SomeDays, 5),
        ])
    });

    let mut builder = Builder {
        rng,
        today,
        birth,
        female,
        record_start,
        physiology: &physiology,
        visits: Vec::new(),
    };
    let mut problems = builder.problems(heavy, smoking);
    let allergies = builder.allergies();
    builder.child_visits();
    builder.physicals();
    builder.follow_ups(&problems);
    builder.episodes();
    if heavy {
        builder.heart_failure_admissions(&mut problems);
    }
    builder.procedures(&problems);
    builder.vaccines();
    builder.future_visit(&problems);
    let monitoring = heavy.then(|| {
        let days = builder.rng.range(330, 420);
        Monitoring {
            start: add_days(today, -days),
            days,
        }
    });
    let visits = builder.visits;
    let mut plan = Plan {
        person,
        physiology,
        record_start,
        problems,
        other_meds: Vec::new(),
        visits,
        allergies,
        labs: LabPolicy::Standard,
        smoking,
        monitoring,
        appointments: true,
    };
    plan.sort_visits();
    plan
}

struct Builder<'a> {
    rng: &'a mut Rng,
    today: Date,
    birth: Date,
    female: bool,
    record_start: Date,
    physiology: &'a Physiology,
    visits: Vec<Visit>,
}

impl Builder<'_> {
    fn age_on(&self, date: Date) -> f64 {
        age_years(self.birth, date)
    }

    /// The last day visits can happen on (yesterday).
    fn last_day(&self) -> Date {
        add_days(self.today, -1)
    }

    fn add_visit(&mut self, date: Date, kind: VisitKind) -> &mut Visit {
        let day = clinic_day(date, self.record_start, self.today);
        self.visits.push(Visit::new(day, kind));
        let last = self.visits.len() - 1;
        &mut self.visits[last]
    }

    /// A date at a fractional age, with a little jitter.
    fn at_age(&mut self, years: f64) -> Date {
        let days = (years * 365.25) as i64 + self.rng.range(0, 30);
        add_days(self.birth, days).min(self.last_day())
    }

    fn problems(&mut self, heavy: bool, smoking: Option<Smoking>) -> Vec<Problem> {
        let age = self.age_on(self.today);
        let female = self.female;
        let smoker = matches!(
            smoking,
            Some(Smoking::EveryDay | Smoking::SomeDays | Smoking::Former)
        );
        let obese_now = age >= 18.0 && self.physiology.bmi_at(age) >= 30.0;
        let mut problems: Vec<Problem> = Vec::new();
        for cond in Cond::CHRONIC {
            let has = |c: Cond, problems: &[Problem]| problems.iter().any(|p| p.cond == c);
            let (min_age, p) = match cond {
                Cond::Hypertension if heavy => (35.0, 1.0),
                Cond::Hypertension => (25.0, ((age - 25.0) * 0.011).min(0.6)),
                Cond::Diabetes2 => (
                    30.0,
                    ((age - 30.0) * 0.0045).min(0.25) * if obese_now { 1.8 } else { 1.0 },
                ),
                Cond::Prediabetes if has(Cond::Diabetes2, &problems) => (0.0, 0.0),
                Cond::Prediabetes => (25.0, 0.1),
                Cond::Hyperlipidemia => (30.0, ((age - 30.0) * 0.008).min(0.45)),
                Cond::Asthma => (2.0, 0.08),
                Cond::AllergicRhinitis => (3.0, 0.12),
                Cond::Hypothyroidism => (20.0, if female { 0.07 } else { 0.02 }),
                Cond::Gerd => (20.0, 0.08),
                Cond::Depression => (13.0, 0.08),
                Cond::Anxiety => (13.0, 0.06),
                Cond::KneeOsteoarthritis => (45.0, ((age - 45.0) * 0.007).min(0.3)),
                Cond::Ckd3
                    if has(Cond::Hypertension, &problems) || has(Cond::Diabetes2, &problems) =>
                {
                    (55.0, 0.18)
                }
                Cond::AtrialFibrillation => (60.0, ((age - 60.0) * 0.004).min(0.12)),
                Cond::Copd => (45.0, if smoker { 0.15 } else { 0.02 }),
                Cond::Migraine if age < 66.0 => (12.0, if female { 0.1 } else { 0.03 }),
                Cond::Anemia if female => (12.0, 0.05),
                Cond::Anemia => (50.0, 0.02),
                // Heart failure comes with the hospital stays of the heavily monitored patients.
                Cond::HeartFailure => (60.0, 0.0),
                Cond::CoronaryDisease => (50.0, ((age - 50.0) * 0.003).min(0.1)),
                Cond::Obesity => {
                    if obese_now {
                        if let Some(onset) = self.obesity_onset(age) {
                            problems.push(Problem::new(cond, onset, OnsetStyle::Date));
                        }
                    }
                    continue;
                }
                _ => (0.0, 0.0),
            };
            if age < min_age || !self.rng.chance(p) {
                continue;
            }
            let onset_age = self.rng.uniform(min_age, age);
            let onset = self.at_age(onset_age);
            let style = self.onset_style(onset);
            let mut problem = Problem::new(cond, onset, style);
            if matches!(
                cond,
                Cond::Depression | Cond::Anxiety | Cond::Migraine | Cond::Gerd | Cond::Anemia
            ) && self.rng.chance(0.25)
            {
                let end = add_days(onset, self.rng.range(365, 5 * 365));
                if end < self.today {
                    problem.status = ProblemStatus::Resolved(end);
                }
            } else if cond == Cond::Asthma && self.rng.chance(0.2) {
                problem.status = ProblemStatus::Inactive;
            }
            problem.meds = self.meds_for(&problem);
            problems.push(problem);
        }
        problems
    }

    /// When an adult's BMI first reached 30, scanning year by year from age 18.
    fn obesity_onset(&mut self, age: f64) -> Option<Date> {
        let mut years = 18.0;
        while years <= age {
            if self.physiology.bmi_at(years) >= 30.0 {
                return Some(self.at_age(years));
            }
            years += 1.0;
        }
        None
    }

    fn onset_style(&mut self, onset: Date) -> OnsetStyle {
        let before_record = onset < self.record_start;
        let roll = self.rng.unit();
        if roll < 0.4 {
            OnsetStyle::Date
        } else if roll < 0.6 {
            OnsetStyle::YearMonth
        } else if roll < 0.75 && before_record {
            OnsetStyle::Year
        } else if roll < 0.9 && !before_record {
            OnsetStyle::Instant
        } else if roll < 0.9 {
            OnsetStyle::Date
        } else {
            OnsetStyle::Period
        }
    }

    fn med(&mut self, med: Med, start: Date) -> MedPlan {
        MedPlan {
            med,
            start,
            status: MedStatus::Active,
            intent_plan: self.rng.chance(0.03),
        }
    }

    fn meds_for(&mut self, problem: &Problem) -> Vec<MedPlan> {
        let start = add_days(problem.onset.max(self.record_start), self.rng.range(0, 14))
            .min(self.last_day());
        let mut meds = Vec::new();
        let rng_roll = self.rng.unit();
        match problem.cond {
            Cond::Hypertension if rng_roll < 0.85 => {
                let first = *self.rng.weighted(&[
                    (Med::Lisinopril, 60),
                    (Med::Amlodipine, 25),
                    (Med::Hydrochlorothiazide, 15),
                ]);
                let mut plan = self.med(first, start);
                if self.rng.chance(0.3) {
                    let switch = add_days(start, self.rng.range(365, 4 * 365));
                    if switch < self.today {
                        plan.status = MedStatus::Stopped(switch);
                        let second = if first == Med::Amlodipine {
                            Med::Lisinopril
                        } else {
                            Med::Amlodipine
                        };
                        meds.push(plan);
                        meds.push(self.med(second, switch));
                        return meds;
                    }
                }
                meds.push(plan);
            }
            Cond::Diabetes2 => {
                meds.push(self.med(Med::Metformin, start));
                if self.age_on(start) > 55.0 && self.rng.chance(0.25) {
                    let later = add_days(start, self.rng.range(2 * 365, 5 * 365));
                    if later < self.today {
                        meds.push(self.med(Med::Insulin7030, later));
                    }
                }
            }
            Cond::Hyperlipidemia if rng_roll < 0.75 => {
                let statin = if self.rng.chance(0.65) {
                    Med::Atorvastatin
                } else {
                    Med::Simvastatin
                };
                meds.push(self.med(statin, start));
            }
            Cond::Asthma | Cond::MildPersistentAsthma => {
                meds.push(self.med(Med::Albuterol, start));
                if self.rng.chance(0.5) {
                    meds.push(self.med(Med::Fluticasone, start));
                }
            }
            Cond::AllergicRhinitis if rng_roll < 0.6 => {
                meds.push(self.med(Med::Cetirizine, start));
            }
            Cond::Hypothyroidism => meds.push(self.med(Med::Levothyroxine, start)),
            Cond::Depression if rng_roll < 0.9 => {
                let drug = if self.rng.chance(0.55) {
                    Med::Sertraline
                } else {
                    Med::Fluoxetine
                };
                meds.push(self.med(drug, start));
            }
            Cond::Anxiety if rng_roll < 0.6 => meds.push(self.med(Med::Sertraline, start)),
            Cond::KneeOsteoarthritis if rng_roll < 0.9 => {
                let drug = if self.rng.chance(0.55) {
                    Med::Naproxen
                } else {
                    Med::Acetaminophen
                };
                meds.push(self.med(drug, start));
            }
            Cond::AtrialFibrillation if rng_roll < 0.8 => {
                meds.push(self.med(Med::Warfarin, start));
            }
            Cond::Copd => meds.push(self.med(Med::Albuterol, start)),
            Cond::Migraine if rng_roll < 0.6 => meds.push(self.med(Med::Naproxen, start)),
            Cond::CoronaryDisease => {
                if rng_roll < 0.7 {
                    meds.push(self.med(Med::Clopidogrel, start));
                }
                if self.rng.chance(0.5) {
                    meds.push(self.med(Med::Nitroglycerin, start));
                }
            }
            _ => {}
        }
        if let ProblemStatus::Resolved(end) = problem.status {
            for med in &mut meds {
                if med.status == MedStatus::Active {
                    med.status = MedStatus::Stopped(end.max(add_days(med.start, 1)));
                }
            }
        }
        meds
    }

    fn allergies(&mut self) -> Vec<AllergyPlan> {
        let mut allergies: Vec<AllergyPlan> = Vec::new();
        if !self.rng.chance(0.25) {
            return allergies;
        }
        let count = if self.rng.chance(0.3) { 2 } else { 1 };
        while allergies.len() < count {
            let allergen = *self.rng.pick(&Allergen::ALL);
            if allergies.iter().any(|a| a.allergen == allergen) {
                continue;
            }
            let recorded =
                date_between(self.rng, self.record_start, self.today).unwrap_or(self.record_start);
            let high = match allergen {
                Allergen::Peanut | Allergen::Shellfish => self.rng.chance(0.6),
                Allergen::Penicillin | Allergen::Amoxicillin => self.rng.chance(0.3),
                _ => self.rng.chance(0.1),
            };
            allergies.push(AllergyPlan {
                allergen,
                recorded,
                high_criticality: high,
            });
        }
        allergies
    }

    /// Well-child visits: the CDC schedule with its vaccines, then yearly checks to age 17.
    fn child_visits(&mut self) {
        if self.age_on(self.record_start) >= 18.0 {
            return;
        }
        for (days, vaccines) in CHILDHOOD_SCHEDULE {
            let date = add_days(self.birth, days + self.rng.range(0, 10));
            if date < self.record_start || date >= self.today {
                continue;
            }
            let visit = self.add_visit(date, VisitKind::Physical);
            visit.vaccines = vaccines.to_vec();
        }
        // Ages the schedule above already covers with a visit.
        let covered = [2, 3, 4, 6, 11, 12, 16];
        for years in 5..18 {
            if covered.contains(&years) {
                continue;
            }
            let date = add_days(add_years(self.birth, years), self.rng.range(0, 45));
            if date >= self.record_start && date < self.today {
                self.add_visit(date, VisitKind::Physical);
            }
        }
    }

    /// Adult annual physicals, most years.
    fn physicals(&mut self) {
        for year in self.record_start.year()..=self.today.year() {
            let low = Date::from_calendar_date(year, time::Month::January, 1)
                .unwrap_or(self.record_start)
                .max(self.record_start);
            let high = Date::from_calendar_date(year + 1, time::Month::January, 1)
                .unwrap_or(self.today)
                .min(self.today);
            let Some(date) = date_between(self.rng, low, high) else {
                continue;
            };
            let age = self.age_on(date);
            if age < 18.0 {
                continue;
            }
            let p = if age < 50.0 { 0.75 } else { 0.9 };
            if self.rng.chance(p) {
                self.add_visit(date, VisitKind::Physical);
            }
        }
    }

    /// Visits to follow chronic problems: twice a year for diabetes, about yearly otherwise.
    fn follow_ups(&mut self, problems: &[Problem]) {
        for problem in problems {
            if matches!(
                problem.cond,
                Cond::Obesity | Cond::Gerd | Cond::AllergicRhinitis
            ) {
                continue;
            }
            let per_year = if problem.cond == Cond::Diabetes2 {
                2
            } else {
                1
            };
            let specialty_care = matches!(
                problem.cond,
                Cond::Hypertension
                    | Cond::AtrialFibrillation
                    | Cond::HeartFailure
                    | Cond::CoronaryDisease
                    | Cond::Diabetes2
                    | Cond::Hypothyroidism
                    | Cond::Asthma
                    | Cond::Copd
            );
            let first = problem.onset.max(self.record_start);
            for year in first.year()..=self.today.year() {
                for _ in 0..per_year {
                    if !self.rng.chance(0.65) {
                        continue;
                    }
                    let low = Date::from_calendar_date(year, time::Month::January, 1)
                        .unwrap_or(first)
                        .max(first);
                    let high = Date::from_calendar_date(year + 1, time::Month::January, 1)
                        .unwrap_or(self.today)
                        .min(self.today);
                    let Some(date) = date_between(self.rng, low, high) else {
                        continue;
                    };
                    if !problem.active_on(date) {
                        continue;
                    }
                    let telehealth = date >= TELEHEALTH_FROM && self.rng.chance(0.2);
                    let specialist = specialty_care && self.rng.chance(0.25);
                    let kind = if telehealth {
                        VisitKind::Telehealth
                    } else {
                        VisitKind::FollowUp
                    };
                    let visit = self.add_visit(date, kind);
                    visit.reason = Some(problem.cond);
                    visit.specialist = specialist;
                }
            }
        }
    }

    /// Acute illnesses and injuries, each seen in clinic, on video, in the ED or admitted.
    fn episodes(&mut self) {
        for year in self.record_start.year()..=self.today.year() {
            let mid_year =
                Date::from_calendar_date(year, time::Month::July, 1).unwrap_or(self.record_start);
            let age = self.age_on(mid_year);
            let rate = if age < 12.0 {
                0.7
            } else if age < 60.0 {
                0.35
            } else {
                0.45
            };
            for _ in 0..3 {
                if !self.rng.chance(rate / 3.0) {
                    continue;
                }
                let low = Date::from_calendar_date(year, time::Month::January, 1)
                    .unwrap_or(self.record_start)
                    .max(self.record_start);
                let high = Date::from_calendar_date(year + 1, time::Month::January, 1)
                    .unwrap_or(self.today)
                    .min(self.today);
                if let Some(date) = date_between(self.rng, low, high) {
                    self.episode(date);
                }
            }
        }
    }

    fn episode(&mut self, date: Date) {
        let age = self.age_on(date);
        let covid = if date >= COVID_FROM { 10 } else { 0 };
        let cond = if age < 12.0 {
            *self.rng.weighted(&[
                (Cond::OtitisMedia, 30),
                (Cond::StrepThroat, 20),
                (Cond::ViralSinusitis, 10),
                (Cond::AcuteBronchitis, 10),
                (Cond::Gastroenteritis, 10),
                (Cond::Influenza, 10),
                (Cond::AnkleSprain, if age >= 5.0 { 5 } else { 0 }),
                (Cond::UrinaryInfection, 5),
                (Cond::Covid19, covid / 2),
            ])
        } else {
            *self.rng.weighted(&[
                (Cond::ViralSinusitis, 20),
                (Cond::AcuteBronchitis, 15),
                (Cond::StrepThroat, 10),
                (Cond::UrinaryInfection, if self.female { 18 } else { 4 }),
                (Cond::AnkleSprain, 8),
                (Cond::LowBackPain, 12),
                (Cond::Gastroenteritis, 8),
                (Cond::Influenza, 8),
                (Cond::Cellulitis, 4),
                (Cond::Pneumonia, if age >= 60.0 { 8 } else { 3 }),
                (Cond::Covid19, covid),
            ])
        };
        let roll = self.rng.unit();
        let mut kind = match cond {
            Cond::Pneumonia if age >= 60.0 && roll < 0.6 => {
                VisitKind::Inpatient(self.rng.range(3, 6) as u8)
            }
            Cond::Pneumonia => VisitKind::Emergency,
            Cond::Cellulitis | Cond::AnkleSprain if roll < 0.55 => VisitKind::Emergency,
            Cond::Gastroenteritis if roll < 0.3 => VisitKind::Emergency,
            Cond::Covid19 | Cond::Influenza | Cond::ViralSinusitis
                if date >= TELEHEALTH_FROM && roll < 0.35 =>
            {
                VisitKind::Telehealth
            }
            Cond::LowBackPain => VisitKind::Sick,
            _ if roll < 0.12 => VisitKind::Emergency,
            _ => VisitKind::Sick,
        };
        if let VisitKind::Inpatient(days) = kind {
            if add_days(date, i64::from(days) + 1) >= self.today {
                kind = VisitKind::Emergency;
            }
        }
        let med = match cond {
            Cond::OtitisMedia if self.rng.chance(0.8) => Some(Med::Amoxicillin250),
            Cond::StrepThroat => Some(if self.rng.chance(0.5) {
                Med::PenicillinV
            } else {
                Med::Amoxicillin500
            }),
            Cond::ViralSinusitis if self.rng.chance(0.25) => Some(Med::AmoxClav),
            Cond::UrinaryInfection => Some(Med::SulfaTrimethoprim),
            Cond::AnkleSprain | Cond::LowBackPain => Some(Med::Ibuprofen),
            Cond::Gastroenteritis if self.rng.chance(0.6) => Some(Med::Ondansetron),
            Cond::Pneumonia | Cond::Cellulitis => Some(Med::AmoxClav),
            _ => None,
        };
        let resolves_after_days = match cond {
            Cond::LowBackPain => self.rng.range(14, 60),
            Cond::Pneumonia => self.rng.range(14, 28),
            _ => self.rng.range(5, 21),
        };
        let x_ray = cond == Cond::Pneumonia
            || (cond == Cond::AcuteBronchitis
                && kind == VisitKind::Emergency
                && self.rng.chance(0.5));
        let visit = self.add_visit(date, kind);
        visit.episode = Some(Episode {
            cond,
            med,
            resolves_after_days,
        });
        if x_ray {
            visit.procedure = Some(Proc::ChestXray);
        }
    }

    /// Heart failure for the monitored patients: diagnosed at a first admission, sometimes
    /// readmitted later.
    fn heart_failure_admissions(&mut self, problems: &mut Vec<Problem>) {
        let high = add_days(self.today, -420);
        let low = self.record_start.max(add_days(high, -4 * 365));
        let Some(first) = date_between(self.rng, low, high) else {
            return;
        };
        problems.push(Problem::new(Cond::HeartFailure, first, OnsetStyle::Instant));
        let mut admissions = vec![first];
        if self.rng.chance(0.6) {
            if let Some(again) = date_between(self.rng, add_days(first, 90), high) {
                admissions.push(again);
            }
        }
        for date in admissions {
            let days = self.rng.range(3, 6) as u8;
            self.visits.push(Visit {
                reason: Some(Cond::HeartFailure),
                specialist: true,
                ..Visit::new(date, VisitKind::Inpatient(days))
            });
        }
    }

    /// Screening colonoscopies, ECGs and spirometry.
    fn procedures(&mut self, problems: &[Problem]) {
        let fifty = add_years(self.birth, 50).max(self.record_start);
        if fifty < self.today && self.rng.chance(0.15) {
            if let Some(date) = date_between(self.rng, fifty, self.today) {
                let visit = self.add_visit(date, VisitKind::Procedure);
                visit.procedure = Some(Proc::Colonoscopy);
            }
        }
        for problem in problems {
            let (procedure, p) = match problem.cond {
                Cond::Hypertension | Cond::AtrialFibrillation | Cond::CoronaryDisease => {
                    (Proc::Electrocardiogram, 0.35)
                }
                Cond::Asthma | Cond::Copd => (Proc::Spirometry, 0.3),
                _ => continue,
            };
            if !self.rng.chance(p) {
                continue;
            }
            if let Some(visit) = self.visits.iter_mut().find(|v| {
                v.kind == VisitKind::FollowUp
                    && v.reason == Some(problem.cond)
                    && v.procedure.is_none()
            }) {
                visit.procedure = Some(procedure);
            }
        }
    }

    /// Seasonal flu shots and the adult vaccines, given at existing visits when one falls in
    /// the right window, else at a nurse visit.
    fn vaccines(&mut self) {
        for year in self.record_start.year()..=self.today.year() {
            let (Ok(open), Ok(close)) = (
                Date::from_calendar_date(year, time::Month::September, 15),
                Date::from_calendar_date(year, time::Month::December, 15),
            ) else {
                continue;
            };
            let low = open.max(self.record_start);
            let high = close.min(self.today);
            if low >= high {
                continue;
            }
            let age = self.age_on(low);
            if age < 0.5 {
                continue;
            }
            let p = if age < 18.0 {
                0.55
            } else if age < 65.0 {
                0.4
            } else {
                0.7
            };
            if !self.rng.chance(p) {
                continue;
            }
            self.give(Vaccine::Influenza, low, high);
        }
        let adult = add_years(self.birth, 19).max(self.record_start);
        if adult < self.today && self.rng.chance(0.35) {
            if let Some(date) = date_between(self.rng, adult, self.today) {
                // The ten-yearly tetanus booster: Tdap or, for some, plain Td.
                let booster = if self.rng.chance(0.7) {
                    Vaccine::Tdap
                } else {
                    Vaccine::Td
                };
                self.give(booster, date, add_days(date, 1));
            }
        }
        let sixty_five = add_years(self.birth, 65).max(self.record_start);
        if sixty_five < self.today && self.rng.chance(0.6) {
            let high = add_days(sixty_five, 365).min(self.today);
            self.give(Vaccine::Ppsv23, sixty_five, high);
        }
        let zoster_from = add_years(self.birth, 50)
            .max(self.record_start)
            .max(date!(2018 - 01 - 01));
        if zoster_from < self.today && self.rng.chance(0.35) {
            if let Some(first) = date_between(self.rng, zoster_from, self.today) {
                self.give(Vaccine::Zoster, first, add_days(first, 1));
                let second = add_days(first, self.rng.range(60, 180));
                if second < self.today {
                    self.give(Vaccine::Zoster, second, add_days(second, 1));
                }
            }
        }
        let covid_first = date!(2021 - 03 - 01);
        if covid_first >= self.record_start
            && covid_first < self.today
            && self.age_on(covid_first) >= 18.0
            && self.rng.chance(0.6)
        {
            let first = add_days(covid_first, self.rng.range(0, 90));
            let second = add_days(first, self.rng.range(21, 28));
            for date in [first, second] {
                if date < self.today {
                    self.give(Vaccine::Covid19, date, add_days(date, 1));
                }
            }
        }
    }

    /// Gives a vaccine at an in-person visit within `[low, high)`, or at a new nurse visit.
    fn give(&mut self, vaccine: Vaccine, low: Date, high: Date) {
        let existing = self.visits.iter_mut().find(|v| {
            v.date >= low
                && v.date < high
                && matches!(
                    v.kind,
                    VisitKind::Physical | VisitKind::FollowUp | VisitKind::Sick
                )
                && !v.vaccines.contains(&vaccine)
        });
        if let Some(visit) = existing {
            visit.vaccines.push(vaccine);
            return;
        }
        let Some(date) = date_between(self.rng, low, high) else {
            return;
        };
        let visit = self.add_visit(date, VisitKind::Immunization);
        visit.vaccines.push(vaccine);
    }

    /// A booked visit in the coming weeks for patients under regular care.
    fn future_visit(&mut self, problems: &[Problem]) {
        let ongoing = problems
            .iter()
            .find(|p| p.active_on(self.today) && p.cond != Cond::Obesity);
        let child = self.age_on(self.today) < 18.0;
        if (ongoing.is_none() && !child) || !self.rng.chance(0.6) {
            return;
        }
        let date = weekday_on_or_before(add_days(self.today, self.rng.range(3, 90)));
        self.visits.push(Visit {
            reason: ongoing.map(|p| p.cond),
            ..Visit::new(date, VisitKind::Planned)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clinic_days_are_weekdays_within_bounds() {
        let low = date!(2024 - 01 - 01);
        let high = date!(2025 - 01 - 01);
        // 2024-06-08 is a Saturday, 2024-06-09 a Sunday.
        assert_eq!(
            clinic_day(date!(2024 - 06 - 08), low, high),
            date!(2024 - 06 - 07)
        );
        assert_eq!(
            clinic_day(date!(2024 - 06 - 09), low, high),
            date!(2024 - 06 - 07)
        );
        // Moving back would leave the range, so the visit moves to the Monday after.
        let low = date!(2024 - 06 - 08);
        assert_eq!(
            clinic_day(date!(2024 - 06 - 08), low, high),
            date!(2024 - 06 - 10)
        );
    }

    #[test]
    fn emails_are_ascii() {
        let mut rng = Rng::new(1);
        let e = email(&mut rng, "Renée", "O'Brien");
        assert!(e.starts_with("renee.obrien"), "{e}");
        assert!(e.ends_with("@example.com"));
    }

    #[test]
    fn date_between_is_half_open() {
        let mut rng = Rng::new(2);
        let low = date!(2024 - 01 - 01);
        assert_eq!(date_between(&mut rng, low, low), None);
        for _ in 0..100 {
            let d = date_between(&mut rng, low, date!(2024 - 01 - 03));
            assert!(matches!(d, Some(d) if d >= low && d < date!(2024 - 01 - 03)));
        }
    }
}
