//! The session file: a YAML stream, one document per event after a header document.
//! Appending never rewrites the file; a crash loses at most the event being written.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::events::Event;
use super::options::RunOptions;

pub const FORMAT: &str = "arborist-session/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub arborist: String,
    pub created_unix: u64,
    pub model: String,
    /// Sampled hash of config.json and the weight files (see `fingerprint`).
    pub fingerprint: String,
    pub options: RunOptions,
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
}

impl SessionWriter {
    /// Create a new session file; refuses to overwrite an existing one.
    pub fn create(path: &Path, header: &Header) -> Result<SessionWriter> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot create session {} (pass --resume to continue an existing one)",
                    path.display()
                )
            })?;
        let doc = serde_yaml::to_string(header)?;
        file.write_all(format!("---\n{doc}").as_bytes())?;
        file.sync_data()?;
        Ok(SessionWriter {
            path: path.to_path_buf(),
            file,
            seq: 0,
        })
    }

    /// Continue an existing file after `seq` events (a torn last document is cut off first).
    pub fn append_to(path: &Path, valid_len: u64, seq: u64) -> Result<SessionWriter> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open session {}", path.display()))?;
        file.set_len(valid_len)?;
        let mut file = file;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok(SessionWriter {
            path: path.to_path_buf(),
            file,
            seq,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One document, written with a single call and synced.
    pub fn append(&mut self, event: &Event) -> Result<()> {
        self.seq += 1;
        let entry = Entry {
            seq: self.seq,
            unix_ms: now_ms(),
            event: event.clone(),
        };
        let doc = format!("---\n{}", serde_yaml::to_string(&entry)?);
        self.file
            .write_all(doc.as_bytes())
            .and_then(|_| self.file.sync_data())
            .with_context(|| format!("cannot write session {}", self.path.display()))
    }
}

pub struct SessionLog {
    pub header: Header,
    pub entries: Vec<Entry>,
    /// Bytes of complete documents; anything after is a torn write.
    pub valid_len: u64,
    pub torn_tail: bool,
}

/// Read a session file. A last document that does not parse (a crash mid-write) is
/// reported as torn and dropped; a bad document elsewhere is an error naming it.
pub fn read(path: &Path) -> Result<SessionLog> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read session {}", path.display()))?;
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
    let header: Header = serde_yaml::from_str(&text[starts[0]..starts[1]])
        .with_context(|| format!("{}: the header document is invalid", path.display()))?;
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
    let docs = starts.len() - 2;
    for k in 0..docs {
        let (a, b) = (starts[k + 1], starts[k + 2]);
        match serde_yaml::from_str::<Entry>(&text[a..b]) {
            Ok(e) => {
                entries.push(e);
                valid_len = b as u64;
            }
            Err(_) if k + 1 == docs => torn_tail = true,
            Err(e) => bail!(
                "{}: event document {} (byte {a}) is invalid: {e}",
                path.display(),
                k + 1
            ),
        }
    }
    Ok(SessionLog {
        header,
        entries,
        valid_len,
        torn_tail,
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
