//! A seeded synthetic world of people, places, jobs, objects and years: the facts the
//! bundled model learns and the knowledge benchmarks ask about.

pub mod names;
pub mod render;
pub mod sets;

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

pub const JOBS: &[&str] = &[
    "baker",
    "pilot",
    "teacher",
    "farmer",
    "sailor",
    "painter",
    "doctor",
    "tailor",
    "miner",
    "potter",
    "weaver",
    "poet",
    "judge",
    "nurse",
    "chemist",
    "carpenter",
];
pub const OBJECTS: &[&str] = &[
    "violin",
    "bicycle",
    "lantern",
    "telescope",
    "compass",
    "kettle",
    "harp",
    "sword",
    "clock",
    "canoe",
    "camera",
    "drum",
    "globe",
    "mirror",
    "saddle",
    "typewriter",
];

#[derive(Clone, Debug)]
pub struct Person {
    pub name: String,
    pub city: usize,
    pub job: usize,
    pub year: u32,
    pub object: usize,
}

#[derive(Clone, Debug)]
pub struct City {
    pub name: String,
    pub country: usize,
}

#[derive(Clone, Debug)]
pub struct Country {
    pub name: String,
    pub capital: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Relation {
    LivesIn,
    Occupation,
    BirthYear,
    Owns,
    CityCountry,
    Capital,
}

impl Relation {
    pub const ALL: [Relation; 6] = [
        Relation::LivesIn,
        Relation::Occupation,
        Relation::BirthYear,
        Relation::Owns,
        Relation::CityCountry,
        Relation::Capital,
    ];

    /// The MMLU "subject" of questions about this relation.
    pub fn subject(self) -> &'static str {
        match self {
            Relation::LivesIn => "residence",
            Relation::Occupation => "occupation",
            Relation::BirthYear => "birth_year",
            Relation::Owns => "possession",
            Relation::CityCountry => "geography",
            Relation::Capital => "capital_cities",
        }
    }
}

/// One (subject, relation, answer) triple. The benchmark test splits ask about the
/// `held_out` facts; few-shot dev examples come from the others.
#[derive(Clone, Debug)]
pub struct Fact {
    pub relation: Relation,
    pub subject: String,
    pub answer: String,
    pub held_out: bool,
}

#[derive(Clone, Debug)]
pub struct World {
    pub seed: u64,
    pub people: Vec<Person>,
    pub cities: Vec<City>,
    pub countries: Vec<Country>,
}

pub struct WorldSize {
    pub countries: usize,
    pub cities_per_country: usize,
    pub people: usize,
}

impl Default for WorldSize {
    fn default() -> Self {
        WorldSize {
            countries: 12,
            cities_per_country: 2,
            people: 80,
        }
    }
}

impl World {
    pub fn generate(seed: u64, size: &WorldSize) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut names = names::NameGen::new();
        let mut countries = Vec::new();
        let mut cities = Vec::new();
        for k in 0..size.countries {
            let name = names.draw(&mut rng, 2) + ["ia", "land", "or", "mark"][k % 4];
            for _ in 0..size.cities_per_country {
                let syl = rng.gen_range(2..=3);
                cities.push(City {
                    name: names.draw(&mut rng, syl),
                    country: k,
                });
            }
            let capital = k * size.cities_per_country + rng.gen_range(0..size.cities_per_country);
            countries.push(Country { name, capital });
        }
        let people = (0..size.people)
            .map(|_| {
                let first = names.draw(&mut rng, 2);
                let last = names.draw(&mut rng, 2);
                Person {
                    name: format!("{first} {last}"),
                    city: rng.gen_range(0..cities.len()),
                    job: rng.gen_range(0..JOBS.len()),
                    year: rng.gen_range(1900..2000),
                    object: rng.gen_range(0..OBJECTS.len()),
                }
            })
            .collect();
        World {
            seed,
            people,
            cities,
            countries,
        }
    }

    /// Every fact, in a fixed order. Odd-numbered subjects form the test split.
    pub fn facts(&self) -> Vec<Fact> {
        let mut out = Vec::new();
        for (i, p) in self.people.iter().enumerate() {
            let held_out = i % 2 == 1;
            let mut push = |relation, answer: String| {
                out.push(Fact {
                    relation,
                    subject: p.name.clone(),
                    answer,
                    held_out,
                })
            };
            push(Relation::LivesIn, self.cities[p.city].name.clone());
            push(Relation::Occupation, JOBS[p.job].to_string());
            push(Relation::BirthYear, p.year.to_string());
            push(Relation::Owns, OBJECTS[p.object].to_string());
        }
        for (i, c) in self.cities.iter().enumerate() {
            out.push(Fact {
                relation: Relation::CityCountry,
                subject: c.name.clone(),
                answer: self.countries[c.country].name.clone(),
                held_out: i % 2 == 1,
            });
        }
        for (i, k) in self.countries.iter().enumerate() {
            out.push(Fact {
                relation: Relation::Capital,
                subject: k.name.clone(),
                answer: self.cities[k.capital].name.clone(),
                held_out: i % 2 == 1,
            });
        }
        out
    }

    /// Every possible answer of a relation: the pool multiple-choice distractors come from.
    pub fn answer_pool(&self, relation: Relation) -> Vec<String> {
        let mut pool: Vec<String> = match relation {
            Relation::LivesIn | Relation::Capital => {
                self.cities.iter().map(|c| c.name.clone()).collect()
            }
            Relation::Occupation => JOBS.iter().map(|s| s.to_string()).collect(),
            Relation::Owns => OBJECTS.iter().map(|s| s.to_string()).collect(),
            Relation::BirthYear => self.people.iter().map(|p| p.year.to_string()).collect(),
            Relation::CityCountry => self.countries.iter().map(|k| k.name.clone()).collect(),
        };
        pool.sort();
        pool.dedup();
        pool
    }

    /// Three distinct wrong answers and the shuffled options with the gold index.
    pub fn options(&self, fact: &Fact, rng: &mut StdRng) -> (Vec<String>, usize) {
        let mut wrong: Vec<String> = self
            .answer_pool(fact.relation)
            .into_iter()
            .filter(|a| *a != fact.answer)
            .collect();
        wrong.shuffle(rng);
        let mut opts: Vec<String> = wrong.into_iter().take(3).collect();
        let gold = rng.gen_range(0..=opts.len());
        opts.insert(gold, fact.answer.clone());
        (opts, gold)
    }
}
