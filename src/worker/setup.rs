//! Opening a session (new or resumed) and attaching a driver once the engine is ready.
//! Shared by the headless runner and the TUI.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

use super::{driver::Driver, Workers};
use crate::model::ModelFiles;
use crate::session::file::{self, DataHashes, Header, SessionLog, SessionWriter};
use crate::session::{Event, Machine, RunOptions, StopReason};

pub struct Opened {
    pub opts: RunOptions,
    pub path: PathBuf,
    /// The existing file when resuming.
    pub log: Option<SessionLog>,
    /// The resumed file, locked against other writers while this process runs.
    pub lock: Option<std::fs::File>,
    /// The arguments that continue this session, quoted for a shell: `--session P
    /// --resume`, and the paths of moved files it was resumed with (the header keeps the
    /// recorded ones).
    pub continue_with: String,
    /// Said with an error resolving the model: a resumed session's recorded model that is
    /// not found may sit elsewhere here (`--model`).
    pub model_hint: Option<String>,
    /// A default name, claimed until the session file exists (`attach` drops it then).
    pub claim: Option<crate::session::reserve::Reservation>,
    /// The directories above a new session's file that do not exist yet, deepest first:
    /// removed again (when empty) with a file that recorded nothing.
    pub made_dirs: Vec<PathBuf>,
}

/// Rebuild the machine from a session file's inputs.
pub fn replay_inputs(log: &SessionLog, path: &Path) -> Result<Machine> {
    Ok(replay_log(log, path)?.0)
}

/// The machine, and the derived events (guard verdicts, the finish) that its inputs imply
/// but the file lacks because the process died before writing them; the first event that
/// does not follow from the ones before it is an error (`session::consistency`).
pub fn replay_log(log: &SessionLog, path: &Path) -> Result<(Machine, Vec<Event>)> {
    crate::session::consistency::replay_checked(log)
        .map_err(|d| anyhow!("{}: {}", path.display(), d.why))
}

/// What resuming drops of a file whose last document a crash cut off.
pub fn torn_note(log: &SessionLog, path: &Path) -> Option<String> {
    log.torn_bytes(path).map(|n| {
        format!(
            "{}: dropped an incomplete last document ({n} bytes: cut off by a crash or an incomplete copy)",
            path.display()
        )
    })
}

/// A session that cannot be opened for writing (a read-only copy) is said first to be
/// finished when it is: its resume would do nothing, and the permission was beside the
/// point. A session the agent's failures ended is resumed, so it keeps `e`.
fn finished_unwritable(path: &Path, e: anyhow::Error) -> anyhow::Error {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    let io = e.root_cause().downcast_ref::<std::io::Error>();
    if !io.is_some_and(|io| matches!(io.kind(), PermissionDenied | ReadOnlyFilesystem)) {
        return e;
    }
    match file::read(path).ok().as_ref().and_then(recorded_finish) {
        Some(reason) => {
            let aside = format!(
                " (and it cannot be opened for writing here: {})",
                e.root_cause()
            );
            anyhow!("{}", already_finished(path, &reason, &aside))
        }
        None => e,
    }
}

/// What a resume of a finished session says, with `aside` after "nothing to do".
pub fn already_finished(path: &Path, reason: &StopReason, aside: &str) -> String {
    format!(
        "session {} had already finished ({}); nothing to do{aside}; view it with `arborist replay {}`",
        path.display(),
        reason.words(),
        shell_word(&path.display().to_string())
    )
}

/// How the file says its session ended, when a resume has nothing to do: a session the
/// agent's failures ended is asked again.
pub fn recorded_finish(log: &SessionLog) -> Option<StopReason> {
    match log.entries.last().map(|x| &x.event) {
        Some(Event::Finished { reason, .. }) if *reason != StopReason::AgentFailed => {
            Some(reason.clone())
        }
        _ => None,
    }
}

/// A new session that recorded no event (its model failed to load, a TUI quit first, a
/// headless run failed at the baseline) leaves nothing behind: its file (none, or a header
/// alone), and the directories made for it with the log (`log`, when given) they hold.
/// True when nothing is left.
///
/// Only for a file this process created and still holds locked: another run's new file
/// holds only its header too, for as long as its baseline takes.
pub fn discard_unrecorded(path: &Path, made_dirs: &[PathBuf], log: Option<&Path>) -> bool {
    let recorded =
        path.exists() && !crate::session::file::read(path).is_ok_and(|l| l.entries.is_empty());
    if recorded || (path.exists() && std::fs::remove_file(path).is_err()) {
        return false;
    }
    remove_made(made_dirs, log);
    true
}

/// The directories made for a session that kept no file, and the log (`log`, when given)
/// in one of them; a directory that holds anything else stays.
pub fn remove_made(made_dirs: &[PathBuf], log: Option<&Path>) {
    if let Some(log) = log.filter(|l| l.parent().is_some_and(|d| made_dirs.iter().any(|m| m == d)))
    {
        let _ = std::fs::remove_file(log);
    }
    for dir in made_dirs {
        let _ = std::fs::remove_dir(dir);
    }
}

/// A new session at `path` (which must not exist), or the existing one when `resume`.
pub fn open(opts: RunOptions, path: PathBuf, resume: bool) -> Result<Opened> {
    if resume {
        let lock = file::lock(&path).map_err(|e| finished_unwritable(&path, e))?;
        let log = file::read(&path)?;
        // Resuming cuts the file after its last whole document: text added there by hand
        // would be lost.
        if let Some(n) = log.torn_bytes(&path).filter(|_| log.appended) {
            bail!(
                "{}: {n} byte(s) after its last document's end marker are not a document (added by hand?); move them out of the file to resume it",
                path.display()
            );
        }
        return Ok(Opened {
            opts: log.header.options.clone(),
            continue_with: continue_with(&path),
            path,
            log: Some(log),
            lock: Some(lock),
            model_hint: None,
            claim: None,
            made_dirs: Vec::new(),
        });
    }
    if path.is_dir() {
        bail!(
            "--session {} is a directory; it takes a file (sessions/NAME.yaml)",
            path.display()
        );
    }
    if let Some(file) = path.ancestors().skip(1).find(|a| a.is_file()) {
        bail!(
            "--session {}: {} is not a directory",
            path.display(),
            file.display()
        );
    }
    // A FIFO or a device is no session to resume.
    if path.exists() && !path.is_file() {
        bail!(
            "--session {} is not a regular file; it takes a file (sessions/NAME.yaml)",
            path.display()
        );
    }
    if path.exists() {
        bail!(
            "session {} already exists (pass --resume to continue it)",
            path.display()
        );
    }
    // A link to a missing file: creating through it was refused as "File exists", with
    // advice to resume a file that is not there.
    if let Ok(target) = std::fs::read_link(&path) {
        bail!(
            "--session {} is a symbolic link to {}, which does not exist; remove the link or pass another path",
            path.display(),
            target.display()
        );
    }
    let made_dirs = path
        .parent()
        .map_or_else(Vec::new, crate::runtime::missing_dirs);
    Ok(Opened {
        opts,
        continue_with: continue_with(&path),
        path,
        log: None,
        lock: None,
        model_hint: None,
        claim: None,
        made_dirs,
    })
}

/// Resolve the session's model (fast, here; with `model_hint` on failure) and start its
/// workers.
pub fn start(s: &Opened) -> Result<(Workers, ModelFiles)> {
    let files = match &s.log {
        Some(log) => resolve_recorded(&s.opts.model, s.model_hint.as_deref(), &log.header)?,
        None => resolve_model(&s.opts.model, s.model_hint.as_deref())?,
    };
    super::launch::start(files, &s.opts)
}

/// A recorded session's model. A hub id is taken at the commit the header records when
/// the cache holds it, then as named when the cache's files are the recorded weights (a
/// branch that moved on by a commit that left them alone), then downloaded at that commit;
/// only when that fails (or `model` is another repository than the recorded one) is it
/// resolved as named, for the fingerprint check to judge.
pub fn resolve_recorded(model: &str, hint: Option<&str>, header: &Header) -> Result<ModelFiles> {
    use crate::model::source::{pinned_spec, split_hub_spec};
    // A commit names files of the repository it was recorded for, not of one moved to.
    let same_repo =
        split_hub_spec(model).map(|s| s.0) == split_hub_spec(&header.model).map(|s| s.0);
    let pinned = header
        .model_commit
        .as_deref()
        .filter(|_| same_repo)
        .and_then(|c| pinned_spec(model, c));
    let Some(pinned) = pinned else {
        return resolve_model(model, hint);
    };
    if let Some(f) = ModelFiles::from_hub_cache(&pinned) {
        return Ok(f);
    }
    if let Some(f) = ModelFiles::from_hub_cache(model) {
        if file::fingerprint(&f.config, &f.weights)? == header.fingerprint {
            return Ok(f);
        }
    }
    match ModelFiles::resolve(&pinned) {
        Ok(f) => Ok(f),
        Err(e) => {
            let files = resolve_model(model, hint)?;
            tracing::warn!(
                "model {model}: the session's commit cannot be had ({}); using {} instead",
                e.root_cause(),
                files
                    .commit
                    .as_deref()
                    .map_or_else(|| files.id.clone(), |c| format!("commit {c}"))
            );
            Ok(files)
        }
    }
}

/// `ModelFiles::resolve`, with `hint` in front of its error: where a session's recorded
/// model may be instead.
pub fn resolve_model(model: &str, hint: Option<&str>) -> Result<ModelFiles> {
    ModelFiles::resolve(model).map_err(|e| match hint {
        Some(h) => e.context(h.to_string()),
        None => e,
    })
}

/// The error when `model`'s files (fingerprint `fp`) are not the weights of the session
/// at `path`, with the commits when both are known.
pub fn other_weights(
    path: &Path,
    model: &str,
    fp: &str,
    header: &Header,
    files: &ModelFiles,
) -> anyhow::Error {
    let commits = match (&files.commit, &header.model_commit) {
        (Some(now), Some(was)) => {
            format!(" (its files are commit {now}, the session's were {was})")
        }
        _ => String::new(),
    };
    anyhow::anyhow!(
        "{}: model {model} has fingerprint {fp}, the session was recorded on {}{commits}",
        path.display(),
        header.fingerprint
    )
}

/// The whole command, subcommand included: `arborist --session ...` is no command, and a
/// session started by plain `arborist` (the demo) resumes with `run` as any other does.
fn continue_with(path: &Path) -> String {
    format!(
        "arborist run --session {} --resume",
        shell_word(&path.display().to_string())
    )
}

/// `s` as one shell word: as it is when it needs no quoting, else in single quotes.
pub fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=@%+,-~".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Refuse to go on when the engine's windows differ from those a session was recorded with.
pub fn check_data(
    recorded: &DataHashes,
    now: &DataHashes,
    opts: &RunOptions,
    session: &Path,
) -> Result<()> {
    for (key, was) in recorded {
        let is = now.get(key).map_or("none", String::as_str);
        if is == was {
            continue;
        }
        let (flag, what, path) = match (key.as_str(), &opts.probe) {
            ("probe", Some(p)) => ("probe-file", "items", super::launch::probe_path(p, opts)?),
            ("calib", _) => (
                "calib",
                "windows",
                super::launch::text_path(&opts.calib, key, opts)?,
            ),
            _ => (
                "eval",
                "windows",
                super::launch::text_path(&opts.eval, "eval", opts)?,
            ),
        };
        let path = std::path::absolute(&path).unwrap_or(path);
        bail!(
            "{}: the --{flag} {what} read from {} differ from those the session was recorded \
             with ({is}, recorded {was}): the file changed, a relative path now points \
             elsewhere (run from the directory the session was started in, or give \
             --{flag} the path of the file the session used), or the header's options \
             that cut them (seqlen, window counts, sample) were edited",
            session.display(),
            path.display()
        );
    }
    Ok(())
}

/// After the engine reported ready: write the header (or reopen the file), rebuild the
/// machine, and start or resume the loop. Nothing is written before this point. `data`:
/// the engine's data fingerprints, from `launch::wait_ready`.
pub fn attach(
    o: &mut Opened,
    workers: Workers,
    files: &ModelFiles,
    data: DataHashes,
) -> Result<Driver> {
    // Measured before the writer cuts the torn document off; said only once resuming works.
    let note = match &o.log {
        Some(l) => {
            let notes: Vec<String> = (torn_note(l, &o.path).into_iter())
                .chain(l.unknown_note(&o.path))
                .chain(prompts_note(&l.header, &o.opts, &o.path)?)
                .collect();
            (!notes.is_empty()).then(|| notes.join("; "))
        }
        None => None,
    };
    let fingerprint = file::fingerprint(&files.config, &files.weights)?;
    let (machine, writer) = match &o.log {
        None => {
            let header = Header {
                format: file::FORMAT.into(),
                arborist: env!("CARGO_PKG_VERSION").into(),
                created_unix: file::now_ms() / 1000,
                model: o.opts.model.clone(),
                model_commit: files.commit.clone(),
                fingerprint,
                options: o.opts.clone(),
                data,
                prompt_hashes: if o.opts.agent.backend == "builtin" {
                    Default::default()
                } else {
                    crate::agent::prompt::source_hashes(
                        o.opts.agent.prompts.as_deref().map(Path::new),
                    )?
                },
            };
            let m = Machine::new(&o.opts.model, o.opts.loop_opts.clone());
            let w = SessionWriter::create(&o.path, &header)?;
            // The file holds the name now: a marker kept to the end of the run was left
            // behind by every kill.
            o.claim = None;
            (m, w)
        }
        Some(log) => {
            if log.header.fingerprint != fingerprint {
                return Err(other_weights(
                    &o.path,
                    &o.opts.model,
                    &fingerprint,
                    &log.header,
                    files,
                ));
            }
            check_data(&log.header.data, &data, &o.opts, &o.path)?;
            let (m, missing) = replay_log(log, &o.path)?;
            let seq = log.entries.last().map_or(0, |e| e.seq);
            let lock = o
                .lock
                .as_ref()
                .context("a resumed session is opened locked")?;
            let mut w = SessionWriter::append_to(lock.try_clone()?, &o.path, log.valid_len, seq)?;
            for ev in &missing {
                w.append(ev)?;
            }
            (m, w)
        }
    };
    let mut d = Driver::new(machine, Some(writer), workers);
    if let Some(note) = &note {
        tracing::warn!("{note}");
    }
    d.note = note;
    if o.log.is_some() {
        d.resume()?;
    } else if let Err(e) = d.start() {
        // No front end gets this driver to discard its file: gone here, still locked.
        let _ = d.finish_writes();
        discard_unrecorded(&o.path, &o.made_dirs, None);
        return Err(e);
    }
    Ok(d)
}

/// A resumed LLM session whose prompt templates differ from those its header hashed (the
/// files edited, or another version's built-in ones): said, since the prompts recorded from
/// here on come from other templates than the header describes.
fn prompts_note(header: &Header, opts: &RunOptions, path: &Path) -> Result<Option<String>> {
    if opts.agent.backend == "builtin" || header.prompt_hashes.is_empty() {
        return Ok(None);
    }
    let dir = opts.agent.prompts.as_deref().map(Path::new);
    let now = crate::agent::prompt::source_hashes(dir)?;
    let changed: Vec<&str> = now
        .iter()
        .filter(|(name, hash)| header.prompt_hashes.get(*name) != Some(*hash))
        .map(|(name, _)| name.as_str())
        .collect();
    let source = match dir {
        Some(d) => format!("in {}", d.display()),
        None => "built into this version".to_string(),
    };
    Ok((!changed.is_empty()).then(|| {
        format!(
            "{}: prompt template(s) {} ({source}) differ from those the session was recorded with (its header's prompt_hashes); the prompts from here on come from the current text",
            path.display(),
            changed.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    /// A read-only copy of a finished session: its resume says that it is finished
    /// before what stopped the writing (root, which runs CI, may write any file, so the
    /// refusal is built here).
    #[test]
    fn a_finished_session_that_cannot_be_written_is_said_to_be_finished() {
        let example = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/sessions/example.yaml"
        ));
        let refused = |kind: std::io::ErrorKind| {
            anyhow::Error::new(std::io::Error::from(kind))
                .context(format!("cannot open session {}", example.display()))
        };
        let e = super::finished_unwritable(example, refused(std::io::ErrorKind::PermissionDenied));
        let want = format!(
            "session {0} had already finished (target reached); nothing to do (and it cannot be opened for writing here: permission denied); view it with `arborist replay {0}`",
            example.display()
        );
        assert_eq!(format!("{e:#}"), want);
        let e =
            super::finished_unwritable(example, refused(std::io::ErrorKind::ReadOnlyFilesystem));
        assert!(format!("{e:#}").contains("had already finished"), "{e:#}");
        // Any other failure, and a session not finished, keep their error.
        let e = super::finished_unwritable(example, refused(std::io::ErrorKind::NotFound));
        assert!(format!("{e:#}").starts_with("cannot open session"), "{e:#}");
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(example).unwrap();
        let cut = &text[..text.rfind("\n---").unwrap() + 1];
        let unfinished = dir.path().join("u.yaml");
        std::fs::write(&unfinished, cut).unwrap();
        assert!(crate::session::file::read(&unfinished).is_ok());
        let e =
            super::finished_unwritable(&unfinished, refused(std::io::ErrorKind::PermissionDenied));
        assert!(format!("{e:#}").starts_with("cannot open session"), "{e:#}");
    }

    // The "continue with" line is copied into a shell: a path with a space or a quote
    // must stay one word.
    #[test]
    fn shell_words_round_trip_through_sh() {
        for s in ["sessions/a.yaml", "my models/qwen 3", "it's", "", "a$b`c"] {
            let w = shell_word(s);
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {w}")])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s, "{w}");
        }
        assert_eq!(shell_word("sessions/a.yaml"), "sessions/a.yaml");
    }
}
