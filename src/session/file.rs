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

/// One YAML document as the file holds it: `---`, the value, the end marker.
fn document<T: Serialize>(value: &T) -> Result<String> {
    let yaml = serde_yaml::to_string(value)?;
    Ok(format!(
        "---\n{}{END}",
        yaml.strip_suffix('\n').unwrap_or(&yaml)
    ))
}

/// Hashes of the token windows a run computes on, by option (`calib`, `eval`).
pub type DataHashes = std::collections::BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub arborist: String,
    pub created_unix: u64,
    pub model: String,
    /// The hub commit of the model's files (a model named by hub id): a replay or resume
    /// takes the model at this commit. Absent for a directory and in older headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_commit: Option<String>,
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
    /// Create a new session file; refuses to overwrite an existing one. A failure (a full
    /// disk at the header) leaves neither the file nor the directories made for it.
    pub fn create(path: &Path, header: &Header) -> Result<SessionWriter> {
        let made = path
            .parent()
            .map_or_else(Vec::new, crate::runtime::missing_dirs);
        let created = Self::create_in_place(path, header);
        if created.is_err() {
            for dir in &made {
                let _ = std::fs::remove_dir(dir);
            }
        }
        created
    }

    fn create_in_place(path: &Path, header: &Header) -> Result<SessionWriter> {
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
        let doc = document(header)?;
        // The header is written under a temporary name and linked into place, so the file
        // never exists without it (a kill in between left an empty file that could be
        // neither resumed nor started again). The link refuses an existing file.
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let prefix = crate::runtime::hidden_prefix(&name, ".new-");
        // A creation killed before it linked its file left only this temporary.
        for stale in unlinked_headers(path) {
            let _ = std::fs::remove_file(stale);
        }
        let tmp = path.with_file_name(format!("{prefix}{}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(cannot)?;
        // Locked first (the lock is the inode's, so the linked file is locked from birth).
        let write_header = |file: &mut File| -> Result<()> {
            locked(file, path)?;
            // A full disk said which file it could not write.
            let written = file
                .write_all(doc.as_bytes())
                .and_then(|_| file.sync_data());
            written.with_context(|| format!("cannot create session {}", path.display()))
        };
        let linked = write_header(&mut file).map(|_| std::fs::hard_link(&tmp, path));
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
                if let Err(e) = write_header(&mut file) {
                    let _ = std::fs::remove_file(path);
                    return Err(e);
                }
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

    /// A writer whose every write fails (no space: `/dev/full`), for tests of what follows
    /// a failed write.
    #[cfg(test)]
    pub(crate) fn on_full_device() -> std::io::Result<SessionWriter> {
        let full = Path::new("/dev/full");
        let file = OpenOptions::new().write(true).open(full)?;
        Ok(SessionWriter {
            path: full.to_path_buf(),
            file,
            seq: 0,
            len: 0,
            failed: false,
        })
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
        let doc = document(&entry)?;
        let written = self
            .file
            .write_all(doc.as_bytes())
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            self.failed = true;
            // A write refused whole (EPERM: an immutable file) left nothing to cut, and the
            // cut fails for the same reason: no torn event to speak of.
            let cut = self
                .file
                .set_len(self.len)
                .or_else(|c| match self.file.metadata() {
                    Ok(m) if m.len() == self.len => Ok(()),
                    _ => Err(c),
                });
            bail!(failed_write(&self.path, &e, self.seq, cut));
        }
        self.seq += 1;
        self.len += doc.len() as u64;
        Ok(())
    }
}

/// Open an existing session for writing, locked (flock) against every other writer until
/// the file is closed: two processes resuming one session would interleave their events.
pub fn lock(path: &Path) -> Result<File> {
    regular_file(path)?;
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
    /// The bytes past `valid_len` follow a whole document's end marker: text appended to
    /// the file, not a write a crash cut off.
    pub appended: bool,
    /// Fields of event documents that no event type has (written by a newer version, or
    /// mistyped by hand), read past: where each is, by document, line and key path.
    pub unknown_fields: Vec<String>,
}

impl SessionLog {
    /// The bytes of `path` (the file this was read from) past its last whole document,
    /// when a crash cut one off or text was added after it (`appended`).
    pub fn torn_bytes(&self, path: &Path) -> Option<u64> {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        self.torn_tail.then(|| size.saturating_sub(self.valid_len))
    }

    /// What a reader (`replay`, `export`, the TUI's replay) leaves out at the file's end,
    /// as a warning says it; None when it reads every byte.
    pub fn left_out_note(&self, path: &Path) -> Option<String> {
        let n = self.torn_bytes(path)?;
        Some(if self.appended {
            format!(
                    "{}: {n} byte(s) after its last document's end marker are not a document (added by hand?) and are left out",
                    path.display()
                )
        } else {
            format!(
                    "{}: its last document is incomplete ({n} bytes: cut off by a crash or an incomplete copy, or a run is still writing it) and is left out",
                    path.display()
                )
        })
    }

    /// One line on the fields of `path` that were read past, when there are any.
    pub fn unknown_note(&self, path: &Path) -> Option<String> {
        let first = self.unknown_fields.first()?;
        let n = self.unknown_fields.len();
        Some(format!(
            "{}: {n} event document(s) hold fields that this version does not know, which were ignored (written by a newer arborist, or edited?); the first: {first}",
            path.display()
        ))
    }
}

/// A device or a pipe (`/dev/zero`) read as a session grew without end or hung: refused.
fn regular_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let left = match e.kind() {
            std::io::ErrorKind::NotFound => unlinked_headers(path).into_iter().next(),
            _ => None,
        };
        let why = match left {
            Some(tmp) => format!(
                " ({} is what a run killed while creating it left: a header and no event; start the session again without --resume, which removes it)",
                tmp.display()
            ),
            None => String::new(),
        };
        anyhow::Error::new(e).context(format!("cannot open session {}{why}", path.display()))
    })?;
    if !meta.is_file() {
        bail!(
            "{}: not a regular file; a session is a YAML file (sessions/NAME.yaml)",
            path.display()
        );
    }
    Ok(())
}

/// The temporaries creations of `path` killed before they linked the file left (see
/// `create_in_place`).
fn unlinked_headers(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let prefix = crate::runtime::hidden_prefix(&name, ".new-");
    crate::runtime::dead_process_leftovers(dir.unwrap_or(Path::new(".")), &prefix)
}

/// Read a session file. A last document that is incomplete (a crash mid-write) is
/// reported as torn and dropped; a bad document elsewhere, or an incomplete header, is an
/// error naming it.
pub fn read(path: &Path) -> Result<SessionLog> {
    regular_file(path)?;
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read session {}", path.display()))?;
    if bytes.is_empty() {
        bail!(
            "{}: empty, not a session file (a run killed before it wrote its header?); delete it to start again",
            path.display()
        );
    }
    let text = checked_text(path, &bytes)?;
    let text = without_torn_separator(text);
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
    let mut docs: Vec<&str> = starts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    // Files written before the end marker: a complete document still ends with a newline
    // and holds every field its type writes.
    let last = docs.len() - 1;
    // Text after the last document's end marker was added to a whole document (a crash
    // cannot write past the marker): the document is kept, the text left out.
    // Blank lines there are dropped quietly.
    let appended = match docs[last].find(END).map(|i| i + END.len()) {
        Some(end) if end < docs[last].len() => {
            let extra = &docs[last][end..];
            docs[last] = &docs[last][..end];
            !extra.trim().is_empty()
        }
        _ => false,
    };
    let marked = docs[0].ends_with(END);
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
    // A header from a build that writes end markers and data hashes (it records
    // `options.agent.max_tokens`, which came after both) but has no marker was cut at a
    // line end: a whole one that lost only its marker reads as before, one that lost the
    // hashes that follow the options would run unchecked against other text.
    let recent = doc["options"]["agent"].get("max_tokens").is_some();
    if !marked && recent {
        let has = |k: &str| header.data.contains_key(k);
        let lost = if !has("calib") || !has("eval") {
            Some("data")
        } else if header.options.agent.backend != "builtin" && header.prompt_hashes.is_empty() {
            Some("prompt_hashes")
        } else {
            None
        };
        if let Some(key) = lost {
            return Err(incomplete(format!(
                "`{key}` is missing, and the end marker the build that wrote it writes: it is cut off"
            )));
        }
    }
    if header.format != FORMAT {
        bail!(
            "{}: format `{}` is not supported (expected {FORMAT})",
            path.display(),
            header.format
        );
    }
    // The file's line on which document k starts.
    let first_line = |k: usize| text[..starts[k]].matches('\n').count() + 1;
    let mut entries = Vec::new();
    let mut valid_len = (starts[0] + docs[0].len()) as u64;
    let mut torn_tail = false;
    let mut unknown_fields = Vec::new();
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
        let e = parsed.map_err(|e| entry_error(path, k, docs[k], first_line(k), e))?;
        let want = entries.last().map_or(1, |p: &Entry| p.seq + 1);
        if e.seq != want {
            bail!(
                "{}: event document {k} (from line {}) has seq {}, expected {want}",
                path.display(),
                first_line(k),
                e.seq
            );
        }
        // Serde reads past a key no event type has; said, not refused (a file of a newer
        // version stays readable).
        let doc = serde_yaml::from_str::<serde_yaml::Value>(unmarked(docs[k]));
        if let (Ok(doc), Ok(written)) = (doc, serde_yaml::to_value(&e)) {
            if let Some(key) = unknown_key(&doc, &written, "") {
                // Said on one line: a quoted key may hold a line break.
                let key = crate::agent::text::one_line(&key, 120);
                let kind = e.event.kind();
                unknown_fields.push(format!(
                    "`{key}` in event document {k} (from line {}, `{kind}`)",
                    first_line(k)
                ));
            }
        }
        entries.push(e);
        valid_len = (starts[k] + docs[k].len()) as u64;
    }
    Ok(SessionLog {
        header,
        entries,
        valid_len,
        torn_tail: torn_tail || stripped || appended,
        appended,
        unknown_fields,
    })
}

/// The file's bytes as text, a torn character or a tail of zeros left off; refused with
/// its cause when they are not UTF-8, or carry a byte-order mark or CRLF line ends.
fn checked_text<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str> {
    // A write cut inside a character, or a tail of zeros (a crash on some filesystems) or
    // of the next document's first dashes, is the torn end of the last document.
    let zeros = bytes.iter().rev().take_while(|&&b| b == 0).count();
    let kept = &bytes[..bytes.len() - zeros];
    let text = match std::str::from_utf8(kept) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&kept[..e.valid_up_to()]).expect("valid up to here")
        }
        Err(e) => bail!(
            "{}: byte {} is not UTF-8 text (was the file damaged?)",
            path.display(),
            e.valid_up_to()
        ),
    };
    // An editor's byte-order mark or Windows line endings: the documents would not be
    // found, or the header would be misread; said as what it is.
    if text.starts_with('\u{feff}') {
        bail!(
            "{}: starts with a byte-order mark (U+FEFF), which session files never have; remove it (an editor saving as UTF-8 with BOM?)",
            path.display()
        );
    }
    if text.contains("\r\n") {
        bail!(
            "{}: has Windows line endings (CRLF), session files have LF; convert it back (dos2unix, or git's core.autocrlf)",
            path.display()
        );
    }
    Ok(text)
}

/// Why event document `k` (starting at the file's line `first`) does not parse.
fn entry_error(
    path: &Path,
    k: usize,
    doc: &str,
    first: usize,
    e: serde_yaml::Error,
) -> anyhow::Error {
    // serde_yaml counts lines within the document, and for a value inside an event
    // (a tagged enum, read whole first) gives only the document's start: there the
    // field (or the mapping that lacks one) is named instead (`culprit`), elsewhere
    // its lines become the file's.
    let mut why = e.to_string();
    let doc = serde_yaml::from_str::<serde_yaml::Value>(unmarked(doc)).ok();
    let kind = doc
        .as_ref()
        .and_then(|v| v["event"]["event"].as_str().map(|s| format!(", `{s}`")))
        .unwrap_or_default();
    let bare = match e.location() {
        Some(l) => {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            why.strip_suffix(&suffix).unwrap_or(&why).to_string()
        }
        None => why.clone(),
    };
    let fails = |v: &serde_yaml::Value| {
        serde_yaml::from_value::<Entry>(v.clone())
            .err()
            .map(|e| e.to_string())
    };
    match doc.and_then(|v| super::culprit::culprit(&v, &bare, fails)) {
        Some(at) => why = format!("{bare} {at}"),
        None => why = lines_in_file(&why, first),
    }
    anyhow::anyhow!(
        "{}: event document {k} (from line {first}{kind}) is invalid: {why}",
        path.display()
    )
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

/// What a failed append says: the cause, and what the file holds now. Before the first
/// event there is nothing to continue (a headless run removes the file), so no resume is
/// promised.
fn failed_write(path: &Path, e: &std::io::Error, seq: u64, cut: std::io::Result<()>) -> String {
    let state = match cut {
        Ok(()) if seq == 0 => "it holds its header and no event".to_string(),
        Ok(()) => "it holds every event before this one (--resume continues it)".into(),
        Err(c) => {
            format!("its torn last event is dropped on --resume ({c}) (--resume continues it)")
        }
    };
    format!("cannot write session {}: {e}; {state}", path.display())
}

/// Header keys added after sessions were first written, and (for the reader of this code)
/// what a header written before each existed ran with. Any other missing key means a cut or
/// edited header.
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
        o.grad_average = crate::profile::grad_average::GradAverage::AbsOfMean;
    }
    if let Some(p) = o.probe.as_mut() {
        if opts["probe"].get("mmlu_prompt").is_none() {
            p.mmlu_prompt = crate::eval::mmlu_prompt::MmluPrompt::LmEval;
        }
    }
}

/// `message` with each "line N" of serde_yaml's (counted from a document starting at line
/// `first` of the file) given as the file's line.
fn lines_in_file(message: &str, first: usize) -> String {
    let mut parts = message.split("line ");
    let mut out = parts.next().unwrap_or("").to_string();
    for part in parts {
        let digits = part.len() - part.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        out += "line ";
        match part[..digits].parse::<usize>() {
            Ok(n) if digits > 0 => out += &format!("{}{}", first + n - 1, &part[digits..]),
            _ => out += part,
        }
    }
    out
}

/// A document without its end marker.
fn unmarked(doc: &str) -> &str {
    doc.strip_suffix(&END[1..]).unwrap_or(doc)
}

/// The first key (as a dotted path) that `written` (a value as serialized) has and `doc`
/// (the document as read) lacks, other than the `excused` ones (searching on past them: an
/// excused key must not hide a missing one after it).
fn missing_key(
    written: &serde_yaml::Value,
    doc: &serde_yaml::Value,
    at: &str,
    excused: &[&str],
) -> Option<String> {
    let serde_yaml::Value::Mapping(w) = written else {
        return None;
    };
    // A section left empty (`options:` and nothing under it: a null) lacks all it holds;
    // its type's defaults would fill it in silently.
    let serde_yaml::Value::Mapping(d) = doc else {
        return (!at.is_empty() && doc.is_null()).then(|| at.trim_end_matches('.').to_string());
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

/// The first key of `doc` that `written` (the same document as read, written again) lacks,
/// as a path (`event.acceptd`). A null is not counted: an absent optional is written as
/// nothing.
fn unknown_key(doc: &serde_yaml::Value, written: &serde_yaml::Value, at: &str) -> Option<String> {
    use serde_yaml::Value;
    match (doc, written) {
        (Value::Mapping(d), Value::Mapping(w)) => d.iter().find_map(|(k, dv)| {
            let name = match k {
                Value::String(s) => format!("{at}{s}"),
                other => format!(
                    "{at}{}",
                    serde_yaml::to_string(other).unwrap_or_default().trim()
                ),
            };
            match w.get(k) {
                None => (!dv.is_null()).then_some(name),
                Some(wv) => unknown_key(dv, wv, &format!("{name}.")),
            }
        }),
        (Value::Sequence(d), Value::Sequence(w)) => {
            d.iter().zip(w).enumerate().find_map(|(i, (dv, wv))| {
                unknown_key(dv, wv, &format!("{}[{i}].", at.trim_end_matches('.')))
            })
        }
        (Value::Tagged(d), Value::Tagged(w)) if d.tag == w.tag => {
            unknown_key(&d.value, &w.value, at)
        }
        _ => None,
    }
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
#[path = "file_tests.rs"]
mod tests;
