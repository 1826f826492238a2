//! MMLU items from the original Hendrycks CSV tree or from Hugging Face `cais/mmlu` parquet.

use anyhow::{anyhow, bail, Context, Result};
use parquet::record::Field;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::parquet_text::{field_str, for_each_row, is_parquet};

pub const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

#[derive(Debug, Clone, PartialEq)]
pub struct MmluItem {
    pub subject: String,
    pub question: String,
    pub choices: [String; 4],
    /// Index of the right choice, 0..4.
    pub answer: usize,
    /// File and row (counted from 1) the item came from, for messages.
    pub source: String,
    pub row: usize,
}

/// The evaluated split and the few-shot (dev) split, each grouped by subject (sorted);
/// items keep their file order within a subject.
#[derive(Debug, Clone)]
pub struct MmluData {
    pub split: String,
    pub test: BTreeMap<String, Vec<MmluItem>>,
    pub dev: BTreeMap<String, Vec<MmluItem>>,
}

/// Few-shot examples per item, and the option that asked for them (`--shots` of `eval`,
/// `probe.shots` of a session's config), as messages name them.
#[derive(Clone, Copy, Debug)]
pub struct Shots {
    pub n: usize,
    pub option: &'static str,
}

impl std::fmt::Display for Shots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.option, self.n)
    }
}

/// Reads `path`: a CSV root (`test/` or `val/`, and `dev/`), a directory of parquet files
/// (`test-*.parquet`, `dev-*.parquet`; or an `all/` folder; or one folder per subject), or
/// one parquet file (its `dev*.parquet` siblings are the dev split). With `shots > 0` the
/// dev split must hold at least `shots` examples of every evaluated subject.
pub fn read_mmlu(path: &Path, shots: Shots) -> Result<MmluData> {
    let data = if path.is_file() {
        if has_ext(path, "csv") {
            bail!("{}: {CSV_LAYOUT}", path.display());
        }
        if !is_parquet(path) {
            bail!(
                "{}: expected an MMLU directory or a .parquet file",
                path.display()
            );
        }
        // A bare file name's parent is "" (the working directory).
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let split = split_of(path).unwrap_or("test").to_string();
        let dev = parquet_files(dir)?
            .into_iter()
            .filter(|f| split_of(f) == Some("dev"))
            .collect();
        read_parquet_split(path, vec![path.to_path_buf()], dev, split, shots)?
    } else if path.is_dir() {
        if ["test", "val", "dev"].iter().any(|d| path.join(d).is_dir()) {
            read_csv_tree(path, shots)?
        } else {
            let files = parquet_tree(path)?;
            if files.is_empty() && holds_csv(path)? {
                bail!("{}: holds CSV files; {CSV_LAYOUT}", path.display());
            }
            let of = |s: &str| -> Vec<PathBuf> {
                files
                    .iter()
                    .filter(|f| split_of(f) == Some(s))
                    .cloned()
                    .collect()
            };
            let (split, test) = if of("test").is_empty() {
                ("validation", of("validation"))
            } else {
                ("test", of("test"))
            };
            read_parquet_split(path, test, of("dev"), split.to_string(), shots)?
        }
    } else {
        bail!("{} does not exist", path.display());
    };
    if data.test.values().all(Vec::is_empty) {
        bail!(
            "{}: no MMLU items found (expected test/SUBJECT_test.csv, val/SUBJECT_val.csv or test-*.parquet)",
            path.display()
        );
    }
    Ok(data)
}

/// Said when a CSV file or folder is passed where the Hendrycks root belongs.
const CSV_LAYOUT: &str = "for the Hendrycks CSV layout pass the folder that holds the test/ (or val/) and dev/ subfolders";

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn holds_csv(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok())
        .any(|e| has_ext(&e.path(), "csv")))
}

/// The split a Hugging Face parquet file belongs to, from its name (`test-00000-of-00001`).
fn split_of(f: &Path) -> Option<&'static str> {
    let name = f.file_name()?.to_str()?;
    ["test", "dev", "validation", "val"]
        .into_iter()
        .find(|s| name.starts_with(s))
        .map(|s| if s == "val" { "validation" } else { s })
}

fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_parquet(p))
        .collect();
    v.sort();
    Ok(v)
}

/// Parquet files of a dataset directory: its own, else `all/`, else every subject folder.
fn parquet_tree(dir: &Path) -> Result<Vec<PathBuf>> {
    let own = parquet_files(dir)?;
    if !own.is_empty() {
        return Ok(own);
    }
    if dir.join("all").is_dir() {
        return parquet_files(&dir.join("all"));
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    let mut all = Vec::new();
    for d in subdirs {
        all.extend(parquet_files(&d)?);
    }
    Ok(all)
}

fn read_parquet_split(
    root: &Path,
    test_files: Vec<PathBuf>,
    dev_files: Vec<PathBuf>,
    split: String,
    shots: Shots,
) -> Result<MmluData> {
    let mut test = BTreeMap::new();
    for f in &test_files {
        read_parquet_items(f, &mut test)?;
    }
    let mut dev = BTreeMap::new();
    if shots.n > 0 {
        if dev_files.is_empty() {
            bail!(
                "{}: {shots} needs the dev split, but there is no dev-*.parquet file",
                root.display()
            );
        }
        for f in &dev_files {
            read_parquet_items(f, &mut dev)?;
        }
        let names: Vec<String> = dev_files.iter().map(|f| f.display().to_string()).collect();
        // An evaluated dev item is left out of its own shots (as lm-eval does when the
        // few-shot split is the one evaluated), so each needs one more.
        check_shots(&test, &dev, shots, split == "dev", |_| names.join(", "))?;
    }
    Ok(MmluData { split, test, dev })
}

fn read_parquet_items(f: &Path, out: &mut BTreeMap<String, Vec<MmluItem>>) -> Result<()> {
    let source = f.display().to_string();
    let cols = ["question", "subject", "choices", "answer"];
    for_each_row(f, &cols, |row, v| {
        let at = |what: &str| anyhow!("{source}: row {row}: {what}");
        let text =
            |i: usize| field_str(v[i]).ok_or_else(|| at(&format!("`{}` is not a string", cols[i])));
        let choices: Vec<String> = match v[2] {
            Field::ListInternal(l) => l
                .elements()
                .iter()
                .map(|c| field_str(c).map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| at("`choices` holds a non-string"))?,
            _ => return Err(at("`choices` is not a list")),
        };
        let choices: [String; 4] = choices
            .try_into()
            .map_err(|c: Vec<String>| at(&format!("{} choices, expected 4", c.len())))?;
        let answer = int_field(v[3]).ok_or_else(|| at("`answer` is not an integer"))?;
        if !(0..4).contains(&answer) {
            return Err(at(&format!("answer {answer} is outside 0..3")));
        }
        let subject = text(1)?.to_string();
        if subject.is_empty() {
            return Err(at("`subject` is empty"));
        }
        out.entry(subject.clone()).or_default().push(MmluItem {
            subject,
            question: text(0)?.to_string(),
            choices,
            answer: answer as usize,
            source: source.clone(),
            row,
        });
        Ok(())
    })
}

/// An integer of any width or signedness (writers store `answer` as int64, int8, uint8...).
fn int_field(f: &Field) -> Option<i128> {
    Some(match *f {
        Field::Byte(a) => a.into(),
        Field::Short(a) => a.into(),
        Field::Int(a) => a.into(),
        Field::Long(a) => a.into(),
        Field::UByte(a) => a.into(),
        Field::UShort(a) => a.into(),
        Field::UInt(a) => a.into(),
        Field::ULong(a) => a.into(),
        _ => return None,
    })
}

/// The Hendrycks layout: `test/SUBJECT_test.csv` (or `val/SUBJECT_val.csv`) and
/// `dev/SUBJECT_dev.csv`, no header, six columns.
fn read_csv_tree(root: &Path, shots: Shots) -> Result<MmluData> {
    let split = match ["test", "val"].into_iter().find(|d| root.join(d).is_dir()) {
        Some(s) => s,
        None => bail!(
            "{}: no MMLU items found (no test/ or val/ directory)",
            root.display()
        ),
    };
    let mut test = BTreeMap::new();
    for (subject, f) in csv_files(&root.join(split), split)? {
        let items = read_csv_items(&f, &subject)?;
        // A subject with no questions would silently drop out of the average.
        if items.is_empty() {
            bail!("{}: no questions (an empty subject file)", f.display());
        }
        test.insert(subject, items);
    }
    let mut dev = BTreeMap::new();
    if shots.n > 0 {
        let dev_dir = root.join("dev");
        if !dev_dir.is_dir() {
            bail!(
                "{shots} needs the dev split, but {} does not exist",
                dev_dir.display()
            );
        }
        for subject in test.keys() {
            let f = dev_dir.join(format!("{subject}_dev.csv"));
            if !f.is_file() {
                bail!(
                    "{} is missing ({shots} needs dev examples of subject {subject})",
                    f.display()
                );
            }
            dev.insert(subject.clone(), read_csv_items(&f, subject)?);
        }
        check_shots(&test, &dev, shots, false, |s| {
            dev_dir.join(format!("{s}_dev.csv")).display().to_string()
        })?;
    }
    Ok(MmluData {
        split: split.to_string(),
        test,
        dev,
    })
}

/// (subject, file) for every `*_{split}.csv` in `dir`, sorted.
fn csv_files(dir: &Path, split: &str) -> Result<Vec<(String, PathBuf)>> {
    let suffix = format!("_{split}.csv");
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
    {
        let p = e?.path();
        let Some(subject) = p
            .file_name()
            .and_then(|n| n.to_str()?.strip_suffix(&suffix))
        else {
            continue;
        };
        if subject.is_empty() {
            bail!(
                "{}: no subject before `{suffix}` (expected SUBJECT{suffix})",
                p.display()
            );
        }
        v.push((subject.to_string(), p));
    }
    v.sort();
    Ok(v)
}

fn read_csv_items(f: &Path, subject: &str) -> Result<Vec<MmluItem>> {
    let source = f.display().to_string();
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(f)
        .with_context(|| format!("cannot read {source}"))?;
    let mut items = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let row = i + 1;
        let rec = rec.map_err(|e| anyhow!("{source}: row {row}: {e}"))?;
        if rec.len() != 6 {
            bail!(
                "{source}: row {row}: {} columns, expected 6 (question, A, B, C, D, answer)",
                rec.len()
            );
        }
        let letter = rec[5].trim();
        let Some(answer) = LETTERS.iter().position(|l| *l == letter) else {
            bail!("{source}: row {row}: answer `{letter}` is not one of A, B, C, D");
        };
        items.push(MmluItem {
            subject: subject.to_string(),
            question: rec[0].to_string(),
            choices: std::array::from_fn(|j| rec[j + 1].to_string()),
            answer,
            source: source.clone(),
            row,
        });
    }
    Ok(items)
}

/// Every evaluated subject needs `shots` dev examples, one more when the dev split is the
/// one evaluated (`evaluating_dev`: an item is left out of its own); `file(subject)`
/// names where.
fn check_shots(
    test: &BTreeMap<String, Vec<MmluItem>>,
    dev: &BTreeMap<String, Vec<MmluItem>>,
    shots: Shots,
    evaluating_dev: bool,
    file: impl Fn(&str) -> String,
) -> Result<()> {
    let need = shots.n + usize::from(evaluating_dev);
    for subject in test.keys() {
        let have = dev.get(subject).map_or(0, Vec::len);
        if have < need {
            let why = match evaluating_dev {
                true => format!(
                    "fewer than the {need} {shots} needs when the dev split itself is evaluated (an item is not its own example)"
                ),
                false => format!("fewer than {shots}"),
            };
            bail!(
                "{}: subject {subject} has {have} dev examples, {why}",
                file(subject)
            );
        }
    }
    Ok(())
}
