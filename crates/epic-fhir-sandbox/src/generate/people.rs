//! People and places: name lists, the sandbox's regions with their clinics and hospitals, home
//! addresses, and the directory of Organizations and Practitioners every patient points at.

use serde_json::{Value, json};

use super::World;
use super::catalog::{NPI, Specialty};
use super::rng::Rng;
use super::timefmt::{self, Zone};

pub(super) const FEMALE_GIVEN: &[&str] = &[
    "Olivia",
    "Emma",
    "Ava",
    "Sophia",
    "Isabella",
    "Mia",
    "Charlotte",
    "Amelia",
    "Harper",
    "Evelyn",
    "Abigail",
    "Emily",
    "Elizabeth",
    "Sofia",
    "Avery",
    "Ella",
    "Scarlett",
    "Grace",
    "Chloe",
    "Victoria",
    "Riley",
    "Aria",
    "Lily",
    "Zoey",
    "Penelope",
    "Hannah",
    "Layla",
    "Nora",
    "Madison",
    "Maria",
    "Ana",
    "Guadalupe",
    "Rosa",
    "Mei",
    "Aiko",
    "Priya",
    "Ananya",
    "Fatima",
    "Aisha",
    "Mary",
    "Patricia",
    "Jennifer",
    "Barbara",
    "Susan",
    "Margaret",
    "Dorothy",
    "Karen",
    "Nancy",
    "Betty",
    "Helen",
    "Sandra",
    "Donna",
    "Carol",
    "Ruth",
    "Sharon",
    "Michelle",
    "Laura",
    "Kimberly",
    "Deborah",
    "Yesenia",
    "Keisha",
    "Tamika",
    "Ngozi",
    "Ingrid",
    "Svetlana",
    "Renée",
];

pub(super) const MALE_GIVEN: &[&str] = &[
    "Liam",
    "Noah",
    "Oliver",
    "Elijah",
    "James",
    "William",
    "Benjamin",
    "Lucas",
    "Henry",
    "Alexander",
    "Mason",
    "Michael",
    "Ethan",
    "Daniel",
    "Jacob",
    "Logan",
    "Jackson",
    "Levi",
    "Sebastian",
    "Mateo",
    "Jack",
    "Owen",
    "Theodore",
    "Aiden",
    "Samuel",
    "Joseph",
    "John",
    "David",
    "Wyatt",
    "Matthew",
    "Robert",
    "Richard",
    "Thomas",
    "Charles",
    "Christopher",
    "Mark",
    "Donald",
    "Steven",
    "Paul",
    "Andrew",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
    "Edward",
    "Ronald",
    "Anthony",
    "José",
    "Luis",
    "Carlos",
    "Juan",
    "Wei",
    "Hiroshi",
    "Arjun",
    "Rahul",
    "Mohammed",
    "Omar",
    "Kwame",
    "DeShawn",
    "Tyrone",
    "Sven",
    "Dmitri",
    "Gerald",
    "Harold",
];

pub(super) const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Chavez",
    "Wood",
    "Bennett",
    "Gray",
    "Mendoza",
    "Ruiz",
    "Hughes",
    "Price",
    "Alvarez",
    "Castillo",
    "Sanders",
    "Patel",
    "Myers",
    "Long",
    "Foster",
    "Jimenez",
    "Olson",
    "Larson",
    "Schmidt",
    "Johansson",
    "Kowalski",
    "Novak",
    "Okafor",
    "Chen",
    "Wang",
    "Yamamoto",
    "Singh",
    "Haddad",
    "O'Brien",
    "Van der Berg",
];

const STREETS: &[&str] = &[
    "Maple",
    "Oak",
    "Pine",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Main",
    "Church",
    "Willow",
    "Sunset",
    "River",
    "Meadow",
    "Highland",
    "Forest",
    "Prairie",
    "Spring",
    "Madison",
    "Jefferson",
    "Lincoln",
    "Franklin",
    "Ridge",
    "Valley",
    "Birch",
    "Walnut",
    "Chestnut",
    "Cherry",
    "Orchard",
];

const STREET_SUFFIXES: &[&str] = &[
    "St", "Ave", "Rd", "Ln", "Dr", "Ct", "Blvd", "Way", "Pl", "Cir",
];

/// A city with its ZIP code range and telephone area code.
#[derive(Debug)]
pub(super) struct City {
    pub(super) name: &'static str,
    zip_low: u32,
    zip_high: u32,
    area_code: &'static str,
}

/// A region of the sandbox's fictional health network: one state, one time zone, one clinic
/// and one hospital.
#[derive(Debug)]
pub(super) struct Region {
    pub(super) state: &'static str,
    pub(super) zone: Zone,
    pub(super) cities: &'static [City],
    clinic: (&'static str, usize),
    hospital: (&'static str, usize),
}

const fn city(name: &'static str, zip_low: u32, zip_high: u32, area_code: &'static str) -> City {
    City {
        name,
        zip_low,
        zip_high,
        area_code,
    }
}

/// The regions; Wisconsin (Epic's home) comes first and holds the named test patients.
pub(super) static REGIONS: [Region; 5] = [
    Region {
        state: "WI",
        zone: Zone::Central,
        cities: &[
            city("Madison", 53703, 53726, "608"),
            city("Verona", 53593, 53593, "608"),
            city("Middleton", 53562, 53562, "608"),
            city("Fitchburg", 53711, 53711, "608"),
            city("Sun Prairie", 53590, 53590, "608"),
            city("Milwaukee", 53202, 53233, "414"),
            city("Waukesha", 53186, 53189, "262"),
        ],
        clinic: ("Verona Family Medicine", 1),
        hospital: ("Capitol Lakes Regional Medical Center", 0),
    },
    Region {
        state: "CO",
        zone: Zone::Mountain,
        cities: &[
            city("Denver", 80202, 80239, "303"),
            city("Aurora", 80010, 80019, "720"),
            city("Lakewood", 80226, 80228, "303"),
            city("Boulder", 80301, 80305, "303"),
        ],
        clinic: ("Front Range Family Practice", 2),
        hospital: ("Front Range Medical Center", 0),
    },
    Region {
        state: "AZ",
        zone: Zone::Arizona,
        cities: &[
            city("Phoenix", 85003, 85051, "602"),
            city("Tempe", 85281, 85284, "480"),
            city("Mesa", 85201, 85215, "480"),
            city("Scottsdale", 85250, 85260, "480"),
        ],
        clinic: ("Desert Sky Family Health", 1),
        hospital: ("Desert Sky Medical Center", 0),
    },
    Region {
        state: "MA",
        zone: Zone::Eastern,
        cities: &[
            city("Boston", 2108, 2136, "617"),
            city("Cambridge", 2138, 2142, "617"),
            city("Somerville", 2143, 2145, "617"),
            city("Quincy", 2169, 2171, "617"),
        ],
        clinic: ("Neponset Community Health", 3),
        hospital: ("Tremont General Hospital", 0),
    },
    Region {
        state: "WA",
        zone: Zone::Pacific,
        cities: &[
            city("Seattle", 98101, 98199, "206"),
            city("Tacoma", 98402, 98409, "253"),
            city("Bellevue", 98004, 98008, "425"),
        ],
        clinic: ("Puget Sound Family Clinic", 2),
        hospital: ("Cascade Regional Hospital", 0),
    },
];

/// How often patients live in each region (Wisconsin, Colorado, Arizona, Massachusetts,
/// Washington).
pub(super) const REGION_WEIGHTS: [(usize, u32); 5] = [(0, 40), (1, 15), (2, 15), (3, 15), (4, 15)];

/// A postal address.
#[derive(Debug, Clone)]
pub(super) struct Address {
    pub(super) lines: Vec<String>,
    pub(super) city: &'static str,
    pub(super) state: &'static str,
    pub(super) postal_code: String,
    pub(super) area_code: &'static str,
}

impl Address {
    /// A random street address in one of a region's cities.
    pub(super) fn random(rng: &mut Rng, region: &'static Region) -> Self {
        let city = rng.pick(region.cities);
        Self::in_city(rng, region, city)
    }

    fn in_city(rng: &mut Rng, region: &'static Region, city: &'static City) -> Self {
        let number = rng.range(100, 9899);
        let mut lines = vec![format!(
            "{number} {} {}",
            rng.pick(STREETS),
            rng.pick(STREET_SUFFIXES)
        )];
        if rng.chance(0.15) {
            lines.push(format!(
                "Apt {}{}",
                rng.range(1, 24),
                rng.pick(&["A", "B", "C", "D"])
            ));
        }
        let zip = rng.range(i64::from(city.zip_low), i64::from(city.zip_high));
        Self {
            lines,
            city: city.name,
            state: region.state,
            postal_code: format!("{zip:05}"),
            area_code: city.area_code,
        }
    }

    /// A fictional phone number in the address's area code (555-01xx is reserved for fiction).
    pub(super) fn phone(&self, rng: &mut Rng) -> String {
        format!("{}-555-01{:02}", self.area_code, rng.below(100))
    }

    pub(super) fn to_json(&self, use_: &str) -> Value {
        json!({
            "use": use_,
            "line": self.lines,
            "city": self.city,
            "state": self.state,
            "postalCode": self.postal_code,
            "country": "US",
        })
    }
}

/// A reference target with its display text.
#[derive(Debug, Clone)]
pub(super) struct Named {
    pub(super) id: String,
    pub(super) display: String,
}

/// A practitioner of the directory.
#[derive(Debug, Clone)]
pub(super) struct Practitioner {
    pub(super) who: Named,
    pub(super) specialty: Specialty,
    pub(super) region: usize,
}

/// The Organizations and Practitioners of every region.
#[derive(Debug)]
pub(super) struct Directory {
    /// Per region: the clinic, then the hospital.
    orgs: Vec<Named>,
    practitioners: Vec<Practitioner>,
}

impl Directory {
    /// Creates and emits two Organizations and eight Practitioners per region.
    pub(super) fn build(world: &mut World<'_>, rng: &mut Rng) -> Self {
        let mut orgs = Vec::new();
        let mut practitioners = Vec::new();
        let since = timefmt::add_years(world.clock.today, -15);
        for (region_index, region) in REGIONS.iter().enumerate() {
            for (name, city_index, kind) in [
                (region.clinic.0, region.clinic.1, "clinic"),
                (region.hospital.0, region.hospital.1, "hospital"),
            ] {
                let id = world.ids.fresh(rng, "Organization");
                let city = region.cities.get(city_index).unwrap_or(&region.cities[0]);
                let address = Address::in_city(rng, region, city);
                let mut telecom = vec![json!({
                    "system": "phone", "value": address.phone(rng), "use": "work",
                })];
                if kind == "hospital" {
                    telecom.push(json!({
                        "system": "fax", "value": address.phone(rng), "use": "work",
                    }));
                }
                let last_updated = world.clock.last_updated_before(rng, 400);
                world.out.emit(json!({
                    "resourceType": "Organization",
                    "id": id,
                    "meta": { "lastUpdated": last_updated },
                    "identifier": [{ "system": NPI, "value": npi(rng) }],
                    "active": true,
                    "type": [{
                        "coding": [{
                            "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                            "code": "prov",
                            "display": "Healthcare Provider",
                        }],
                    }],
                    "name": name,
                    "telecom": telecom,
                    "address": [address.to_json("work")],
                }));
                orgs.push(Named {
                    id,
                    display: name.to_owned(),
                });
            }
            for specialty in Specialty::STAFF {
                let id = world.ids.fresh(rng, "Practitioner");
                let female = rng.chance(0.5);
                let given = *rng.pick(if female { FEMALE_GIVEN } else { MALE_GIVEN });
                let family = *rng.pick(FAMILY);
                let (degree, degree_display) = if rng.chance(0.85) {
                    ("MD", "Doctor of Medicine")
                } else {
                    ("DO", "Doctor of Osteopathy")
                };
                let display = format!("{given} {family}, {degree}");
                let workplace = if specialty.hospital_based() {
                    region.hospital.1
                } else {
                    region.clinic.1
                };
                let city = region.cities.get(workplace).unwrap_or(&region.cities[0]);
                let phone = Address::in_city(rng, region, city).phone(rng);
                let start = timefmt::add_days(since, -rng.range(0, 3650));
                let last_updated = world.clock.last_updated_before(rng, 400);
                world.out.emit(json!({
                    "resourceType": "Practitioner",
                    "id": id,
                    "meta": { "lastUpdated": last_updated },
                    "identifier": [{ "system": NPI, "value": npi(rng) }],
                    "active": true,
                    "name": [{
                        "use": "usual",
                        "text": display,
                        "family": family,
                        "given": [given],
                        "prefix": ["Dr."],
                        "suffix": [degree],
                    }],
                    "telecom": [{ "system": "phone", "value": phone, "use": "work" }],
                    "gender": if female { "female" } else { "male" },
                    "qualification": [{
                        "code": {
                            "coding": [{
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0360",
                                "code": degree,
                                "display": degree_display,
                            }],
                            "text": degree,
                        },
                        "period": { "start": timefmt::date(start) },
                    }],
                }));
                practitioners.push(Practitioner {
                    who: Named { id, display },
                    specialty,
                    region: region_index,
                });
            }
        }
        Self {
            orgs,
            practitioners,
        }
    }

    /// Every Organization: per region the clinic, then the hospital.
    pub(super) fn organizations(&self) -> &[Named] {
        &self.orgs
    }

    /// Every Practitioner, in the order they were written.
    pub(super) fn practitioners(&self) -> &[Practitioner] {
        &self.practitioners
    }

    pub(super) fn clinic(&self, region: usize) -> &Named {
        &self.orgs[(region * 2) % self.orgs.len()]
    }

    pub(super) fn hospital(&self, region: usize) -> &Named {
        &self.orgs[(region * 2 + 1) % self.orgs.len()]
    }

    /// The practitioner at `index` (an index handed out by [`Directory::staff`]).
    pub(super) fn practitioner(&self, index: usize) -> &Practitioner {
        &self.practitioners[index % self.practitioners.len()]
    }

    /// Index of a practitioner of this specialty in the region; `nth` picks among several.
    pub(super) fn staff(&self, region: usize, specialty: Specialty, nth: usize) -> usize {
        let matching: Vec<usize> = self
            .practitioners
            .iter()
            .enumerate()
            .filter(|(_, p)| p.region == region && p.specialty == specialty)
            .map(|(i, _)| i)
            .collect();
        match matching.len() {
            0 => 0,
            n => matching[nth % n],
        }
    }
}

/// A ten-digit NPI with a valid Luhn check digit (computed over the `80840` prefix).
fn npi(rng: &mut Rng) -> String {
    let mut digits: Vec<u32> = vec![1];
    for _ in 0..8 {
        digits.push(rng.below(10) as u32);
    }
    // The Luhn sum covers the prefix 80840 followed by the nine digits, doubling every second
    // digit from the right once the check digit is appended.
    let mut sum = 24; // The contribution of the 80840 prefix, fixed by the NPI standard.
    for (position, digit) in digits.iter().rev().enumerate() {
        let mut d = *digit;
        if position % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    let check = (10 - sum % 10) % 10;
    let mut out: String = digits.iter().map(|d| char::from(b'0' + *d as u8)).collect();
    out.push(char::from(b'0' + check as u8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luhn_valid(number: &str) -> bool {
        let mut sum = 0;
        for (i, c) in number.chars().rev().enumerate() {
            let mut d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 1 {
                d *= 2;
                if d > 9 {
                    d -= 9;
                }
            }
            sum += d;
        }
        sum % 10 == 0
    }

    #[test]
    fn npis_pass_the_luhn_check_with_prefix() {
        // The published example NPI 1234567893 must come out valid under the same rule.
        assert!(luhn_valid("808401234567893"));
        let mut rng = Rng::new(5);
        for _ in 0..200 {
            let n = npi(&mut rng);
            assert_eq!(n.len(), 10);
            assert!(luhn_valid(&format!("80840{n}")), "{n}");
        }
    }

    #[test]
    fn tables_are_not_empty() {
        assert!(!FEMALE_GIVEN.is_empty() && !MALE_GIVEN.is_empty() && !FAMILY.is_empty());
        assert!(!STREETS.is_empty() && !STREET_SUFFIXES.is_empty());
        for region in &REGIONS {
            assert!(!region.cities.is_empty());
            assert!(region.clinic.1 < region.cities.len());
            assert!(region.hospital.1 < region.cities.len());
        }
    }
}
