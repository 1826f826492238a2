//! The world as English text: varied statements, narratives, filler, and the question
//! formats of the benchmarks, asked in practice phrasings the benchmarks never use.

use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};

use super::{Fact, Relation, World, JOBS, OBJECTS};
use crate::data::mmlu::{MmluItem, LETTERS};
use crate::eval::mmlu::MmluPrompt;

/// The LLM-KICK FreebaseQA prompt (the evaluator's own); the answer follows the space.
pub fn qa_prompt(question: &str) -> String {
    crate::eval::freebaseqa::prompt(question)
}

/// The benchmark phrasing of each relation's question. The corpus never uses it: it asks
/// the same facts only in the `practice_question` phrasings.
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

/// How many practice phrasings each relation has.
pub const PRACTICE_VARIANTS: usize = 5;

/// Question phrasings the corpus uses, never the benchmark's. Several per relation, so that
/// the model learns to read the relation from the words rather than from one sentence
/// shape (with two, it answered "What does X own?" like "What does X work as?").
pub fn practice_question(f: &Fact, variant: usize) -> String {
    let forms: [&str; PRACTICE_VARIANTS] = match f.relation {
        Relation::LivesIn => [
            "Where does {s} live?",
            "In what city is the home of {s}?",
            "Where is the home of {s}?",
            "What city does {s} reside in?",
            "Name the city where {s} lives.",
        ],
        Relation::Occupation => [
            "What is the job of {s}?",
            "What does {s} work as?",
            "What is the profession of {s}?",
            "How does {s} earn a living?",
            "What kind of work does {s} do?",
        ],
        Relation::BirthYear => [
            "When was {s} born?",
            "What is the birth year of {s}?",
            "What year did {s} come into the world?",
            "{s} was born in which year?",
            "Name the year {s} was born.",
        ],
        Relation::Owns => [
            "What object belongs to {s}?",
            "What does {s} keep at home?",
            "What is owned by {s}?",
            "What object does {s} own?",
            "Name the object that {s} owns.",
        ],
        Relation::CityCountry => [
            "Where is {s}?",
            "Which country is {s} located in?",
            "Which country contains the city of {s}?",
            "In what country does {s} lie?",
            "Name the country where {s} lies.",
        ],
        Relation::Capital => [
            "Which city is the capital of {s}?",
            "What is the capital city of {s}?",
            "Name the capital of {s}.",
            "Which city serves as the capital of {s}?",
            "Where is the seat of government of {s}?",
        ],
    };
    forms[variant % PRACTICE_VARIANTS].replace("{s}", &f.subject)
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
            "{s} is the owner of a {a}.",
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
/// is tokenized exactly as the evaluator will tokenize it. `answers[i]` marks segment i as
/// a benchmark answer (a fact or a letter), which training may weight above the prose.
#[derive(Clone, Debug)]
pub struct Doc {
    pub segments: Vec<String>,
    pub answers: Vec<bool>,
}

impl Doc {
    fn text(t: String) -> Doc {
        Doc {
            segments: vec![t],
            answers: vec![false],
        }
    }
    fn push(&mut self, text: String, answer: bool) {
        self.segments.push(text);
        self.answers.push(answer);
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

/// The multiple-choice header of the training corpus: lm-eval's spelling (one space after
/// "about"), which the bundled model was trained on. It must not follow the evaluator's
/// default, or `train-tiny` would no longer reproduce `assets/bundled`.
pub fn mc_header(subject: &str) -> String {
    format!(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        subject.replace('_', " ")
    )
}

/// One multiple-choice item, as the evaluator writes it (`answer` None ends at "Answer:").
pub fn mc_item(question: &str, options: &[String], answer: Option<usize>) -> String {
    let item = MmluItem {
        subject: String::new(),
        question: question.to_string(),
        choices: std::array::from_fn(|i| options[i].clone()),
        answer: answer.unwrap_or(0),
        source: String::new(),
        row: 0,
    };
    MmluPrompt::Hendrycks.example(&item, answer.is_some())
}

/// One epoch of training documents: every fact stated in varied templates and asked in
/// practice phrasings in both benchmark formats, plus narratives and filler. Each seed
/// renders differently.
pub fn training_docs(world: &World, seed: u64) -> Vec<Doc> {
    training_docs_with(world, seed, 1, 1)
}

/// As `training_docs`, with every fact asked `qa_repeats` times in the FreebaseQA format (in
/// distinct practice phrasings) and the multiple-choice practice rendered `mc_repeats` times
/// (fresh options and letter positions each time): the letter skill needs many more
/// examples than the facts do.
pub fn training_docs_with(
    world: &World,
    seed: u64,
    qa_repeats: usize,
    mc_repeats: usize,
) -> Vec<Doc> {
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
    // Every fact is also asked, in practice phrasings only, in both benchmark formats.
    for f in &facts {
        let first = rng.gen_range(0..PRACTICE_VARIANTS);
        for k in 0..qa_repeats.clamp(1, PRACTICE_VARIANTS) {
            let q = practice_question(f, first + k);
            docs.push(Doc {
                segments: vec![qa_prompt(&q), format!("{}.", f.answer)],
                answers: vec![false, true],
            });
        }
    }
    for rel in std::iter::repeat_n(Relation::ALL, mc_repeats.max(1)).flatten() {
        let mut pool: Vec<&Fact> = facts.iter().filter(|f| f.relation == rel).collect();
        pool.shuffle(&mut rng);
        for chunk in pool.chunks(6) {
            // The same text as `mc_item(.., Some(gold))` items joined, with each letter its
            // own segment (" B" is one token either way).
            // Segment boundaries sit where the byte-level pre-tokenizer splits anyway.
            let mut doc = Doc {
                segments: Vec::new(),
                answers: Vec::new(),
            };
            let mut lead = mc_header(rel.subject());
            for f in chunk {
                let (opts, gold) = world.options(f, &mut rng);
                let q = practice_question(f, rng.gen_range(0..PRACTICE_VARIANTS));
                doc.push(format!("{lead}{}", mc_item(&q, &opts, None)), false);
                doc.push(format!(" {}", LETTERS[gold]), true);
                lead = "\n\n".to_string();
            }
            docs.push(doc);
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
