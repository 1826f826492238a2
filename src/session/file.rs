//! The session file: a YAML stream, one document per event after a header document.
//! Appending never rewrites the file; a crash loses at most the event being written.
//! Every document ends with YAML's end marker `...`, so a reader can tell a complete last
//! document from one cut off at a line end (which may still parse, with a field missing).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::events::Event;
use super::options::RunOptions;

pub const FORMAT: &str = "arborist-session/1";
/// Ends every document written since the marker was introduced (older files have none).
const END: &str = "\n...\n";

/// Hashes of the token windows a run computes on, by option (`calib`, `eval`).
pub type DataHashes = std::collections::BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub arborist: String,
    pub created_unix: u64,
    pub model: String,
    /// Sampled hash of config.json and the weight files (see `fingerprint`).
    pub fingerprint: String,
    pub options: RunOptions,
    /// Hash of the token windows of each data option (`calib`, `eval`); absent in headers
    /// written before 2026-12-01, which are then not checked.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub data: DataHashes,
    /// Hash of each prompt template in use (agent runs), by file name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub prompt_hashes: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub unix_ms: u64,
    pub event: Event,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct SessionWriter {
    path: PathBuf,
    file: File,
    seq: u64,
    /// Bytes of whole documents written.
    len: u64,
    /// A write failed: the file ends at the last whole event, and nothing more is written
    /// (the session's state has moved past what the file holds).
    failed: bool,
}

impl SessionWriter {
    /// Create a new session file; refuses to overwrite an existing one.
    pub fn create(path: &Path, header: &Header) -> Result<SessionWriter> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let cannot = |e: std::io::Error| {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (pass --resume to continue an existing one)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot create session {}{hint}: {e}", path.display())
        };
        if path.exists() {
            return Err(cannot(std::io::ErrorKind::AlreadyExists.into()));
        }
        let doc = format!("---\n{}...\n", serde_yaml::to_string(header)?);
        // The header is written under a temporary name and linked into place, so the file
        // never exists without it (a kill in between left an empty file that could be
        // neither resumed nor started again). The link refuses an existing file.
        let tmp = path.with_file_name(format!(
            ".{}.new-{}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(cannot)?;
        let written = locked(&file, path)
            .and_then(|_| Ok(file.write_all(doc.as_bytes())?))
            .and_then(|_| Ok(file.sync_data()?));
        let linked = written.map(|_| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked? {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(cannot(e)),
            // A filesystem without hard links: created in place, as before.
            Err(_) => {
                file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(cannot)?;
                locked(&file, path)?;
                file.write_all(doc.as_bytes())?;
                file.sync_data()?;
            }
        }
        Ok(SessionWriter {
            path: path.to_path_buf(),
            file,
            seq: 0,
            len: doc.len() as u64,
            failed: false,
        })
    }

    /// Continue an existing file, opened by `lock`, after `seq` events (a torn last
    /// document is cut off first).
    pub fn append_to(file: File, path: &Path, valid_len: u64, seq: u64) -> Result<SessionWriter> {
        file.set_len(valid_len)?;
        let mut file = file;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok(SessionWriter {
            path: path.to_path_buf(),
            file,
            seq,
            len: valid_len,
            failed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A write has failed; the file holds every event before it, and no more.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// One document, written with a single call and synced. A failed write (a full disk)
    /// is cut off again, so the file stays a whole session up to the event before, and
    /// ends the writing: a later event written after the missing one would be out of step.
    pub fn append(&mut self, event: &Event) -> Result<()> {
        if self.failed {
            bail!(
                "session {} is no longer written after a failed write; it holds every event before that (--resume continues it)",
                self.path.display()
            );
        }
        let entry = Entry {
            seq: self.seq + 1,
            unix_ms: now_ms(),
            event: event.clone(),
        };
        let doc = format!("---\n{}...\n", serde_yaml::to_string(&entry)?);
        let written = self
            .file
            .write_all(doc.as_bytes())
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            self.failed = true;
            let cut = self.file.set_len(self.len);
            let state = match cut {
                Ok(()) => "it holds every event before this one".to_string(),
                Err(c) => format!("its torn last event is dropped on --resume ({c})"),
            };
            bail!(
                "cannot write session {}: {e}; {state} (--resume continues it)",
                self.path.display()
            );
        }
        self.seq += 1;
        self.len += doc.len() as u64;
        Ok(())
    }
}

/// Open an existing session for writing, locked (flock) against every other writer until
/// the file is closed: two processes resuming one session would interleave their events.
pub fn lock(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open session {}", path.display()))?;
    locked(&file, path)?;
    Ok(file)
}

fn locked(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "session {} is open in another arborist process (it stays locked until that one exits)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock session {}", path.display()))
        }
    }
}

pub struct SessionLog {
    pub header: Header,
    pub entries: Vec<Entry>,
    /// Bytes of complete documents; anything after is a torn write.
    pub valid_len: u64,
    pub torn_tail: bool,
}

/// Read a session file. A last document that is incomplete (a crash mid-write) is
/// reported as torn and dropped; a bad document elsewhere, or an incomplete header, is an
/// error naming it.
pub fn read(path: &Path) -> Result<SessionLog> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read session {}", path.display()))?;
    if bytes.is_empty() {
        bail!(
            "{}: empty, not a session file (a run killed before it wrote its header?); delete it to start again",
            path.display()
        );
    }
    // A write cut inside a character, or a tail of zeros (a crash on some filesystems) or
    // of the next document's first dashes, is the torn end of the last document.
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to here")
        }
        Err(e) => bail!(
            "{}: byte {} is not UTF-8 text (was the file damaged?)",
            path.display(),
            e.valid_up_to()
        ),
    };
    let text = without_torn_separator(text.trim_end_matches('\0'));
    let stripped = text.len() < bytes.len();
    let mut starts: Vec<usize> = text
        .match_indices("---\n")
        .filter(|(i, _)| *i == 0 || text.as_bytes()[i - 1] == b'\n')
        .map(|(i, _)| i)
        .collect();
    starts.push(text.len());
    if starts.len() < 2 {
        bail!(
            "{}: not a session file (no header document)",
            path.display()
        );
    }
    let docs: Vec<&str> = starts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    // Files written before the end marker: a complete document still ends with a newline
    // and holds every field its type writes.
    let marked = docs[0].ends_with(END);
    let last = docs.len() - 1;
    // A document followed by another was written whole; the last one may be cut off.
    let cut_off = |k: usize| {
        let doc = docs[k];
        k == last && !(marked && doc.ends_with(END)) && (marked || !doc.ends_with('\n'))
    };
    // Every field its type writes is there (checked for the header, and for the last
    // document of a file without end markers).
    let missing = |k: usize, written: Option<serde_yaml::Value>| -> Option<String> {
        let here: serde_yaml::Value = serde_yaml::from_str(unmarked(docs[k])).ok()?;
        missing_key(&written?, &here, "", &[])
    };
    let incomplete = |why: String| {
        anyhow::anyhow!(
            "{}: the header document is incomplete: {why} (was the file cut off or edited?)",
            path.display()
        )
    };
    if cut_off(0) {
        return Err(incomplete("it is cut off".into()));
    }
    let mut header: Header = serde_yaml::from_str(unmarked(docs[0]))
        .with_context(|| format!("{}: the header document is invalid", path.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(unmarked(docs[0])).unwrap_or_default();
    upgrade_old_header(&doc, &mut header.options);
    let added_later: Vec<&str> = ADDED_LATER.iter().map(|(k, _)| *k).collect();
    if let Some(key) = missing_key(&serde_yaml::to_value(&header)?, &doc, "", &added_later) {
        return Err(incomplete(format!("`{key}` is missing")));
    }
    if header.format != FORMAT {
        bail!(
            "{}: format `{}` is not supported (expected {FORMAT})",
            path.display(),
            header.format
        );
    }
    let mut entries = Vec::new();
    let mut valid_len = starts[1] as u64;
    let mut torn_tail = false;
    for k in 1..docs.len() {
        let parsed = serde_yaml::from_str::<Entry>(unmarked(docs[k]));
        // Only the last document can be torn: cut off, or (without end markers) failing
        // to parse or missing a field. A whole one that does not parse is damage.
        let torn = k == last
            && (cut_off(k)
                || !marked
                    && parsed
                        .as_ref()
                        .map_or(true, |e| missing(k, serde_yaml::to_value(e).ok()).is_some()));
        if torn {
            torn_tail = true;
            break;
        }
        let e = parsed.map_err(|e| {
            anyhow::anyhow!(
                "{}: event document {k} (byte {}) is invalid: {e}",
                path.display(),
                starts[k]
            )
        })?;
        let want = entries.last().map_or(1, |p: &Entry| p.seq + 1);
        if e.seq != want {
            bail!(
                "{}: event document {k} (byte {}) has seq {}, expected {want}",
                path.display(),
                starts[k],
                e.seq
            );
        }
        entries.push(e);
        valid_len = starts[k + 1] as u64;
    }
    Ok(SessionLog {
        header,
        entries,
        valid_len,
        torn_tail: torn_tail || stripped,
    })
}

/// `text` without a trailing start of a document that got no further than its first
/// dashes (`-`, `--`, `---`) after a complete one.
fn without_torn_separator(text: &str) -> &str {
    for dashes in ["---", "--", "-"] {
        if let Some(t) = text.strip_suffix(dashes).filter(|t| t.ends_with(END)) {
            return t;
        }
    }
    text
}

/// A document without its end marker.
/// Header keys added after sessions were first written, and what a header written before
/// each existed ran with. Any other missing key means a cut or edited header.
const ADDED_LATER: [(&str, &str); 5] = [
    (
        "options.eval_cache_mb",
        "full passes; the cache gives the same bits, so the default",
    ),
    ("options.stream_layers", "resident weights"),
    ("options.grad_average", "abs-of-mean"),
    (
        "options.probe.mmlu_prompt",
        "lm-eval's header, questions not stripped",
    ),
    (
        "options.agent.max_tokens",
        "the back end's default reply limit, as unset",
    ),
];

/// Options a header lacks because it was written before they existed take the values that
/// Arborist then used, where those differ from today's defaults (`ADDED_LATER`).
fn upgrade_old_header(doc: &serde_yaml::Value, o: &mut RunOptions) {
    let opts = &doc["options"];
    if opts.get("grad_average").is_none() {
        o.grad_average = crate::profile::GradAverage::AbsOfMean;
    }
    if let Some(p) = o.probe.as_mut() {
        if opts["probe"].get("mmlu_prompt").is_none() {
            p.mmlu_prompt = crate::eval::mmlu::MmluPrompt::LmEval;
        }
    }
}

fn unmarked(doc: &str) -> &str {
    doc.strip_suffix(&END[1..]).unwrap_or(doc)
}

/// The first key (as a dotted path) that `written` (a value as serialized) has and `doc`
/// (the document as read) lacks.
/// The first key `written` has that `doc` lacks, other than the `excused` ones (searching
/// on past them: an excused key must not hide a missing one after it).
fn missing_key(
    written: &serde_yaml::Value,
    doc: &serde_yaml::Value,
    at: &str,
    excused: &[&str],
) -> Option<String> {
    let (serde_yaml::Value::Mapping(w), serde_yaml::Value::Mapping(d)) = (written, doc) else {
        return None;
    };
    w.iter().find_map(|(k, wv)| {
        let name = format!("{at}{}", k.as_str().unwrap_or("?"));
        match d.get(k) {
            None if excused.contains(&name.as_str()) => None,
            None => Some(name),
            Some(dv) => missing_key(wv, dv, &format!("{name}."), excused),
        }
    })
}

/// FNV-1a over config.json and, per weight file, its size and 16 sampled 64 KiB chunks:
/// enough to tell models apart without reading 16 GB.
pub fn fingerprint(config: &Path, weights: &[PathBuf]) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut h = crate::runtime::Fnv1a::new();
    h.eat(&std::fs::read(config).with_context(|| format!("cannot read {}", config.display()))?);
    let mut buf = vec![0u8; 65536];
    for w in weights {
        let mut f = File::open(w).with_context(|| format!("cannot open {}", w.display()))?;
        let len = f.metadata()?.len();
        h.eat(&len.to_le_bytes());
        for k in 0..16u64 {
            let at = len.saturating_sub(buf.len() as u64) * k / 15;
            f.seek(SeekFrom::Start(at))?;
            let n = f.read(&mut buf)?;
            h.eat(&buf[..n]);
        }
    }
    Ok(format!("fnv1a64-sampled:{:016x}", h.value()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session written before end markers, `grad_average` and the per-layer back-off.
    const EXAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sessions/legacy-abs-of-mean.yaml"
    );

    /// The example session rewritten by this build's writer (documents with end markers).
    fn rewritten(dir: &Path) -> (PathBuf, SessionLog) {
        let old = read(Path::new(EXAMPLE)).unwrap();
        let path = dir.join("s.yaml");
        let mut w = SessionWriter::create(&path, &old.header).unwrap();
        for e in &old.entries {
            w.append(&e.event).unwrap();
        }
        (path, old)
    }

    fn cut(path: &Path, len: usize) -> PathBuf {
        let text = std::fs::read(path).unwrap();
        let out = path.with_extension(format!("cut{len}.yaml"));
        std::fs::write(&out, &text[..len]).unwrap();
        out
    }

    /// Keys added after a header was written read as what Arborist then ran with; any
    /// other missing key is still a cut or edited header.
    #[test]
    fn old_headers_read_with_the_options_they_ran_with() {
        use crate::eval::mmlu::MmluPrompt;
        use crate::profile::GradAverage;
        let old = read(Path::new(EXAMPLE)).unwrap();
        assert_eq!(old.header.options.grad_average, GradAverage::AbsOfMean);
        let dir = tempfile::tempdir().unwrap();
        let mut header = old.header.clone();
        header.options = RunOptions {
            probe: Some(super::super::options::ProbeSpec {
                kind: "mmlu".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let path = dir.path().join("new.yaml");
        SessionWriter::create(&path, &header).unwrap();
        let new = read(&path).unwrap().header.options;
        assert_eq!(new.grad_average, GradAverage::MeanOfAbs);
        assert_eq!(new.probe.unwrap().mmlu_prompt, MmluPrompt::Hendrycks);
        let text = std::fs::read_to_string(&path).unwrap();
        let without = |keys: &[&str]| {
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !keys.iter().any(|k| l.trim_start().starts_with(k)))
                .collect();
            let p = dir.path().join(format!("without-{}.yaml", keys.join("-")));
            std::fs::write(&p, kept.join("\n") + "\n").unwrap();
            read(&p)
        };
        let o = without(&["grad_average:", "mmlu_prompt:", "stream_layers:"])
            .unwrap()
            .header
            .options;
        assert_eq!(o.grad_average, GradAverage::AbsOfMean);
        assert_eq!(o.probe.unwrap().mmlu_prompt, MmluPrompt::LmEval);
        let e = without(&["grad_windows:"]).err().unwrap().to_string();
        assert!(e.contains("`options.grad_windows` is missing"), "{e}");
    }

    #[test]
    fn files_without_end_markers_still_read() {
        let log = read(Path::new(EXAMPLE)).unwrap();
        assert!(!log.torn_tail);
        assert!(log.entries.len() > 50, "{}", log.entries.len());
        assert_eq!(
            log.valid_len,
            std::fs::metadata(EXAMPLE).unwrap().len(),
            "every document of the example is complete"
        );
    }

    #[test]
    fn a_rewritten_session_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old) = rewritten(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("\n...\n"));
        let log = read(&path).unwrap();
        assert!(!log.torn_tail);
        assert_eq!(log.header, old.header);
        assert_eq!(log.entries.len(), old.entries.len());
        for (a, b) in log.entries.iter().zip(&old.entries) {
            assert_eq!(a.event, b.event);
        }
        assert_eq!(log.valid_len, text.len() as u64);
    }

    // A header cut anywhere is refused (resuming it would run with default options and
    // glue the next document onto the cut line), in both file generations.
    #[test]
    fn a_cut_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = rewritten(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let header_end = text[4..].find("\n---\n").unwrap() + 5;
        let legacy = std::fs::read_to_string(EXAMPLE).unwrap();
        let legacy_end = legacy[4..].find("\n---\n").unwrap() + 5;
        let at = |t: &str, key: &str| t.find(key).unwrap() + key.len();
        let cases = [
            // New file: mid-line, inside the end marker, and at a line end (which reads
            // as an older file, whose fields are then checked).
            (cut(&path, at(&text, "calib_windows: ")), "cut off"),
            (cut(&path, header_end - 2), "cut off"),
            (
                cut(&path, at(&text, "calib_windows: 8\n")),
                "`options.eval_windows` is missing",
            ),
        ];
        for (p, want) in &cases {
            let err = format!("{:#}", read(p).err().expect("a cut header must be refused"));
            assert!(err.contains("header document is incomplete"), "{err}");
            assert!(err.contains(want), "{err}");
        }
        // An older file cut at a line end: the missing field is named.
        let old = dir.path().join("old.yaml");
        std::fs::write(&old, &legacy[..at(&legacy, "calib_windows: 8\n")]).unwrap();
        let err = format!("{:#}", read(&old).err().unwrap());
        assert!(err.contains("`options.eval_windows` is missing"), "{err}");
        // An older file cut mid-line.
        std::fs::write(&old, &legacy[..legacy_end - 3]).unwrap();
        let err = format!("{:#}", read(&old).err().unwrap());
        assert!(err.contains("cut off"), "{err}");
        // A whole header that lost only its end marker reads as an older file.
        assert!(read(&cut(&path, header_end - 4))
            .unwrap()
            .entries
            .is_empty());
        // A complete older header alone is a session that has not started.
        std::fs::write(&old, &legacy[..legacy_end]).unwrap();
        assert!(read(&old).unwrap().entries.is_empty());
    }

    // The last event cut at a line end, where it may still parse (a list cut short, an
    // optional field lost), is a torn write: dropped, and the file resumes before it.
    #[test]
    fn a_last_event_cut_at_a_line_end_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = rewritten(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let starts: Vec<usize> = text.match_indices("\n---\n").map(|(i, _)| i + 1).collect();
        let mut parsing_cuts = 0;
        for (k, w) in starts.windows(2).enumerate().take(12) {
            let (a, b) = (w[0], w[1]);
            for (i, _) in text[a..b - 5].match_indices('\n').skip(1) {
                let end = a + i + 1;
                if serde_yaml::from_str::<Entry>(&text[a + 4..end]).is_err() {
                    continue;
                }
                parsing_cuts += 1;
                let log = read(&cut(&path, end)).unwrap();
                assert!(log.torn_tail, "event {} cut at byte {end}", k + 1);
                assert_eq!(log.entries.len(), k, "event {} cut at byte {end}", k + 1);
                assert_eq!(log.valid_len, a as u64);
            }
        }
        assert!(parsing_cuts > 0, "no cut parses: the test checks nothing");
    }

    // A crash can also leave the next document's first dashes, a tail of zeros, or a cut
    // inside a character: the complete events before it all stay.
    #[test]
    fn dashes_zeros_and_a_cut_character_after_a_whole_event_keep_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old) = rewritten(dir.path());
        let whole = std::fs::read(&path).unwrap();
        let n = old.entries.len();
        let with = |tail: &[u8]| {
            let out = dir.path().join("t.yaml");
            std::fs::write(&out, [&whole[..], tail].concat()).unwrap();
            read(&out).unwrap()
        };
        for tail in [&b"-"[..], b"--", b"---", &[0u8; 4096], b"---\nseq: 9\0\0"] {
            let log = with(tail);
            assert!(log.torn_tail, "{tail:?}");
            assert_eq!(log.entries.len(), n, "{tail:?}");
            assert_eq!(log.valid_len, whole.len() as u64, "{tail:?}");
        }
        let cut_char = [b"---\nseq: 99\nnote: caf\xc3".as_slice()].concat();
        let log = with(&cut_char);
        assert!(log.torn_tail && log.entries.len() == n);
        // The header alone, then the first dashes of the first event.
        let header_end = whole.windows(5).position(|w| w == b"\n---\n").unwrap() + 1;
        let out = dir.path().join("h.yaml");
        std::fs::write(&out, [&whole[..header_end], b"--"].concat()).unwrap();
        let log = read(&out).unwrap();
        assert!(log.torn_tail && log.entries.is_empty());
        // Bad bytes inside the file are damage, named by position; an empty file says so.
        let mut bad = whole.clone();
        bad[header_end + 10] = 0xff;
        std::fs::write(&out, &bad).unwrap();
        let e = read(&out).err().unwrap().to_string();
        assert!(
            e.contains(&format!("byte {} is not UTF-8", header_end + 10)),
            "{e}"
        );
        std::fs::write(&out, b"").unwrap();
        let e = read(&out).err().unwrap().to_string();
        assert!(e.contains("empty") && e.contains("delete it"), "{e}");
    }

    // The file appears with its whole header (linked into place, locked from the start);
    // an existing one is never replaced.
    #[test]
    fn a_new_session_file_appears_whole_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let old = read(Path::new(EXAMPLE)).unwrap();
        let path = dir.path().join("s.yaml");
        let w = SessionWriter::create(&path, &old.header).unwrap();
        let log = read(&path).unwrap();
        assert!(log.entries.is_empty() && !log.torn_tail);
        assert_eq!(log.header, old.header);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["s.yaml"], "no temporary left");
        assert!(lock(&path).is_err(), "the writer holds the lock");
        let e = SessionWriter::create(&path, &old.header).err().unwrap();
        assert!(e.to_string().contains("pass --resume"), "{e}");
        drop(w);
        lock(&path).unwrap();
    }

    // A failed write (here /dev/full: no space) ends the writing: the next event is
    // refused rather than written after the one that is missing.
    #[test]
    fn after_a_failed_write_nothing_more_is_written() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let mut w = SessionWriter {
            path: full.to_path_buf(),
            file: OpenOptions::new().write(true).open(full).unwrap(),
            seq: 3,
            len: 0,
            failed: false,
        };
        let ev = Event::StopRequested { by: "test".into() };
        let e = format!("{:#}", w.append(&ev).unwrap_err());
        assert!(
            e.starts_with("cannot write session /dev/full: No space left"),
            "{e}"
        );
        assert!(
            e.contains("--resume continues it") && w.failed() && w.seq == 3,
            "{e}"
        );
        let e = format!("{:#}", w.append(&ev).unwrap_err());
        assert!(e.contains("no longer written after a failed write"), "{e}");
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old) = rewritten(dir.path());
        let first = lock(&path).unwrap();
        let err = format!("{:#}", lock(&path).expect_err("a second lock must fail"));
        assert!(err.contains("open in another arborist process"), "{err}");
        drop(first);
        drop(lock(&path).expect("free again once the first is closed"));
        // A session being created is held by its writer as well.
        let fresh = dir.path().join("fresh.yaml");
        let w = SessionWriter::create(&fresh, &old.header).unwrap();
        assert!(lock(&fresh).is_err());
        drop(w);
        drop(lock(&fresh).unwrap());
    }

    // A whole last document (end marker and all) that does not parse is reported, not
    // dropped as if a crash had cut it; without its marker it is a torn write.
    #[test]
    fn a_whole_bad_last_document_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old) = rewritten(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let bad = "---\nseq: 999\nunix_ms: 1\nevent:\n  event: bogus_kind\n";
        std::fs::write(&path, format!("{text}{bad}...\n")).unwrap();
        let err = format!("{:#}", read(&path).err().expect("must be refused"));
        assert!(
            err.contains("is invalid") && err.contains("bogus_kind"),
            "{err}"
        );
        std::fs::write(&path, format!("{text}{bad}")).unwrap();
        let log = read(&path).unwrap();
        assert!(log.torn_tail);
        assert_eq!(log.entries.len(), old.entries.len());
    }

    // A repeated or skipped seq (a hand edit, two writers) is named, not replayed.
    #[test]
    fn events_out_of_sequence_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = rewritten(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.rfind("\n---\n").unwrap() + 1;
        std::fs::write(&path, format!("{text}{}", &text[last..])).unwrap();
        let err = format!("{:#}", read(&path).err().expect("a repeated seq must fail"));
        assert!(err.contains("expected"), "{err}");
        assert!(err.contains("has seq"), "{err}");
    }
}
