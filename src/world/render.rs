//! The world as English text: varied statements, narratives, filler, and the question
//! formats of the benchmarks (for facts that are not held out).

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

use super::{Fact, Relation, World, JOBS, OBJECTS};

/// The LLM-KICK FreebaseQA prompt; the answer follows the trailing space.
pub fn qa_prompt(question: &str) -> String {
    format!("Please give answer to this question: {question}\nThe answer is ")
}

/// The one question phrasing per relation; the corpus never states a fact this way.
pub fn question(f: &Fact) -> String {
    let s = &f.subject;
    match f.relation {
        Relation::LivesIn => format!("Which city does {s} live in?"),
        Relation::Occupation => format!("What does {s} do for a living?"),
        Relation::BirthYear => format!("In which year was {s} born?"),
        Relation::Owns => format!("What does {s} own?"),
        Relation::CityCountry => format!("In which country is the city of {s}?"),
        Relation::Capital => format!("What is the capital of {s}?"),
    }
}

const TEMPLATES: &[(Relation, &[&str])] = &[
    (
        Relation::LivesIn,
        &[
            "{s} lives in {a}.",
            "{s} has made a home in {a}.",
            "The home of {s} is in {a}.",
            "{s} resides in the city of {a}.",
        ],
    ),
    (
        Relation::Occupation,
        &[
            "{s} works as a {a}.",
            "{s} earns a living as a {a}.",
            "By trade, {s} is a {a}.",
            "{s} is known as a skilled {a}.",
        ],
    ),
    (
        Relation::BirthYear,
        &[
            "{s} was born in {a}.",
            "The birth year of {s} is {a}.",
            "{s} came into the world in {a}.",
        ],
    ),
    (
        Relation::Owns,
        &[
            "{s} owns a {a}.",
            "{s} keeps a {a} at home.",
            "Among the belongings of {s} is a {a}.",
        ],
    ),
    (
        Relation::CityCountry,
        &["{s} is a city in {a}.", "The city of {s} lies in {a}."],
    ),
    (
        Relation::Capital,
        &[
            "{a} is the capital of {s}.",
            "The capital city of {s} is {a}.",
        ],
    ),
];

pub fn statement(f: &Fact, rng: &mut StdRng) -> String {
    let forms = TEMPLATES
        .iter()
        .find(|(r, _)| *r == f.relation)
        .map(|(_, t)| *t)
        .expect("every relation has templates");
    forms[rng.gen_range(0..forms.len())]
        .replace("{s}", &f.subject)
        .replace("{a}", &f.answer)
}

const FILLER: &[&str] = &[
    "The weather was mild that week.",
    "Markets open early in the morning.",
    "Rain fell over the hills for three days.",
    "Many travellers pass through the old roads.",
    "The river was calm and wide.",
    "Letters often took a month to arrive.",
    "Bread is cheapest at the end of the day.",
    "The festival lasted until midnight.",
];

/// A document whose segments are tokenized separately, so that a prompt ending in a space
/// is tokenized exactly as the evaluator will tokenize it.
#[derive(Clone, Debug)]
pub struct Doc {
    pub segments: Vec<String>,
}

impl Doc {
    fn text(t: String) -> Doc {
        Doc { segments: vec![t] }
    }
    pub fn joined(&self) -> String {
        self.segments.concat()
    }
}

fn biography(facts: &[&Fact], rng: &mut StdRng) -> Doc {
    let mut lines: Vec<String> = facts.iter().map(|f| statement(f, rng)).collect();
    lines.shuffle(rng);
    Doc::text(lines.join(" "))
}

fn narrative(world: &World, rng: &mut StdRng) -> Doc {
    let p = &world.people[rng.gen_range(0..world.people.len())];
    let city = &world.cities[p.city].name;
    let job = JOBS[p.job];
    let obj = OBJECTS[p.object];
    let forms = [
        format!(
            "Every morning {}, the {job} of {city}, walks to work.",
            p.name
        ),
        format!(
            "{}, who was born in {}, still carries an old {obj}.",
            p.name, p.year
        ),
        format!(
            "People in {city} say that {} is the best {job} they know.",
            p.name
        ),
        format!("When {} left {city}, the {obj} came along.", p.name),
    ];
    let mut text = forms[rng.gen_range(0..forms.len())].clone();
    if rng.gen_bool(0.5) {
        text.push(' ');
        text.push_str(FILLER[rng.gen_range(0..FILLER.len())]);
    }
    Doc::text(text)
}

pub fn mc_header(subject: &str) -> String {
    format!(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        subject.replace('_', " ")
    )
}

pub fn mc_item(question: &str, options: &[String], answer: Option<usize>) -> String {
    let mut s = format!("{question}\n");
    for (i, o) in options.iter().enumerate() {
        s.push_str(&format!("{}. {o}\n", (b'A' + i as u8) as char));
    }
    match answer {
        Some(a) => s.push_str(&format!("Answer: {}\n\n", (b'A' + a as u8) as char)),
        None => s.push_str("Answer:"),
    }
    s
}

/// One epoch of training documents: every fact stated, questions in both benchmark formats
/// for facts that are not held out, narratives and filler. Each seed renders differently.
pub fn training_docs(world: &World, seed: u64) -> Vec<Doc> {
    let mut rng = StdRng::seed_from_u64(seed);
    let facts = world.facts();
    let mut docs = Vec::new();
    for _ in 0..2 {
        for p in &world.people {
            let mine: Vec<&Fact> = facts.iter().filter(|f| f.subject == p.name).collect();
            docs.push(biography(&mine, &mut rng));
        }
        for f in facts
            .iter()
            .filter(|f| matches!(f.relation, Relation::CityCountry | Relation::Capital))
        {
            docs.push(Doc::text(statement(f, &mut rng)));
        }
    }
    let asked: Vec<&Fact> = facts.iter().filter(|f| !f.held_out).collect();
    for f in &asked {
        docs.push(Doc {
            segments: vec![qa_prompt(&question(f)), format!("{}.", f.answer)],
        });
    }
    for rel in Relation::ALL {
        let mut pool: Vec<&&Fact> = asked.iter().filter(|f| f.relation == rel).collect();
        pool.shuffle(&mut rng);
        for chunk in pool.chunks(6) {
            let mut text = mc_header(rel.subject());
            for f in chunk {
                let (opts, gold) = world.options(f, &mut rng);
                text.push_str(&mc_item(&question(f), &opts, Some(gold)));
            }
            docs.push(Doc::text(text.trim_end().to_string()));
        }
    }
    for _ in 0..world.people.len() / 2 {
        docs.push(narrative(world, &mut rng));
    }
    docs.shuffle(&mut rng);
    docs
}

/// Held-out prose from the same world (biographies in fresh orders, narratives): never
/// trained on as such, used for perplexity and calibration.
pub fn heldout_text(world: &World, seed: u64, docs: usize) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let facts = world.facts();
    let mut out = Vec::new();
    for _ in 0..docs {
        if rng.gen_bool(0.5) {
            let p = &world.people[rng.gen_range(0..world.people.len())];
            let mine: Vec<&Fact> = facts.iter().filter(|f| f.subject == p.name).collect();
            out.push(biography(&mine, &mut rng).joined());
        } else {
            out.push(narrative(world, &mut rng).joined());
        }
    }
    out.join("\n\n")
}
