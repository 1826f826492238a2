//! Writing a pruned model as a Hugging Face directory, atomically: everything goes to a
//! temporary sibling directory that is renamed into place only when complete.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

use crate::model::save::Stored;
use crate::model::{Decoder, ModelFiles};
use candle_core::DType;

/// Refuse a non-empty `out` unless `force`; returns whether it must be replaced.
pub fn check_out_dir(out: &Path, force: bool) -> Result<bool> {
    // `.`, `..` or `a/..` name no directory that could be written beside and renamed.
    if out.file_name().is_none() {
        bail!(
            "--out {} has no directory name: give the directory to write, such as {}",
            out.display(),
            out.join("pruned").display()
        );
    }
    // `d/.` names `d`, but Path drops the `.` only in some of its methods: the rename at
    // the end failed after the whole prune.
    let raw = out.as_os_str().as_encoded_bytes();
    let trimmed = raw.strip_suffix(b"/").unwrap_or(raw);
    if trimmed.ends_with(b"/.") {
        let dir = String::from_utf8_lossy(&trimmed[..trimmed.len() - 2]).into_owned();
        bail!(
            "--out {} ends in `.`: give the directory itself, such as {dir}",
            out.display()
        );
    }
    // A link would be replaced by the directory written (its target left as it was), and
    // a dangling one was found only after the whole prune.
    if let Ok(to) = std::fs::read_link(out) {
        bail!(
            "--out {} is a symbolic link (to {}): give the directory itself",
            out.display(),
            to.display()
        );
    }
    check_writable_parent(out)?;
    // Before anything is decided about `out`: it may be what a killed replace left aside.
    if let Some(name) = out.file_name() {
        restore_replaced(parent_dir(out), &name.to_string_lossy());
    }
    if !out.exists() {
        return Ok(false);
    }
    if !out.is_dir() {
        bail!("--out {} exists and is not a directory", out.display());
    }
    let empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot read {}", out.display()))?
        .next()
        .is_none();
    if !empty && !force {
        bail!(
            "--out {} is not empty (pass --force to replace it)",
            out.display()
        );
    }
    Ok(true)
}

/// Refuse an `out` that would be replaced (it exists) while it holds one of `inputs` (the
/// model's files, the calibration or evaluation text, a session file): `--force` removes
/// the whole directory, and the input with it. Both the path as given (a link in a hub
/// snapshot) and the file it resolves to count.
pub fn check_inputs_outside(out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let Ok(root) = out.canonicalize() else {
        return Ok(());
    };
    for (what, p) in inputs {
        let entry = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .ok()
            .zip(p.file_name())
            .map(|(d, f)| d.join(f));
        let target = p.canonicalize().ok();
        if entry.iter().chain(&target).any(|q| q.starts_with(&root)) {
            bail!(
                "--out {} holds {what} {}: replacing it would delete that input; choose another directory",
                out.display(),
                p.display()
            );
        }
    }
    Ok(())
}

/// A model's files, named for `check_inputs_outside`.
pub fn model_inputs(files: &ModelFiles) -> Vec<(&'static str, &Path)> {
    let mut v = vec![
        ("the model's config", files.config.as_path()),
        ("the model's tokenizer", files.tokenizer.as_path()),
    ];
    v.extend(
        files
            .weights
            .iter()
            .map(|w| ("the model's weights", w.as_path())),
    );
    v
}

/// The result is written next to `out` and renamed into place: the nearest existing
/// ancestor must be a directory we can write in, which is checked before any work.
fn check_writable_parent(out: &Path) -> Result<()> {
    let mut at = parent_dir(out);
    while !at.exists() {
        at = parent_dir(at);
    }
    if !at.is_dir() {
        bail!(
            "--out {}: {} is not a directory",
            out.display(),
            at.display()
        );
    }
    let probe = at.join(format!(".arborist-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)
        .and_then(|_| std::fs::remove_dir(&probe))
        .map_err(|e| {
            anyhow::anyhow!(
                "--out {}: cannot write in {}: {e}",
                out.display(),
                at.display()
            )
        })
}

/// The directory holding `p` ("." for a bare name).
fn parent_dir(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Remove temporary siblings of `out` left by processes that died mid-write (kill -9):
/// `.NAME.partial-PID` whose PID no longer runs.
fn remove_stale_partials(parent: &Path, name: &str) {
    let prefix = crate::runtime::hidden_prefix(name, ".partial-");
    for path in crate::runtime::dead_process_leftovers(parent, &prefix) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// A replace by renames killed between its two renames left the old directory at
/// `.NAME.replaced-PID` and no `NAME`: it goes back where it was (removed instead when a
/// newer `NAME` is there).
fn restore_replaced(parent: &Path, name: &str) {
    let out = parent.join(name);
    for path in crate::runtime::dead_process_leftovers(
        parent,
        &crate::runtime::hidden_prefix(name, ".replaced-"),
    ) {
        if out.exists() || std::fs::rename(&path, &out).is_err() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Where `out` is written before it is renamed into place: `.NAME.partial-HOST-PID`.
fn temp_path(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("--out {} has no directory name", out.display()))?
        .to_string_lossy();
    let tag = crate::runtime::owner_tag();
    let prefix = crate::runtime::hidden_prefix(&name, ".partial-");
    Ok(parent_dir(out).join(format!("{prefix}{tag}")))
}

/// The directory `temp_path(out)` goes in, created, and dead processes' leftovers there gone.
fn prepare_parent(out: &Path) -> Result<()> {
    let parent = parent_dir(out);
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    remove_stale_partials(
        parent,
        &out.file_name().unwrap_or_default().to_string_lossy(),
    );
    Ok(())
}

/// Write `d` with its source's config (adjusted) and tokenizer files, its weights in shards
/// of at most `max_shard` bytes (one file when they fit), plus `metadata` as arborist.json,
/// to which the dtype the weights were saved in is added as `weights_dtype`.
/// Nothing appears at `out` unless every file was written.
pub fn export(
    d: &Decoder,
    src: &ModelFiles,
    out: &Path,
    force: bool,
    max_shard: u64,
    metadata: &mut serde_json::Value,
) -> Result<()> {
    write_dir_atomically(out, force, |tmp| {
        write_all(d, src, tmp, max_shard, metadata)
    })
}

/// Run `fill` on a temporary sibling of `out` and rename it into place only if it succeeds.
pub fn write_dir_atomically(
    out: &Path,
    force: bool,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let replace = check_out_dir(out, force)?;
    let tmp = temp_path(out)?;
    // The temporary and the parent directories this write creates go again if it fails,
    // panics or a signal ends it.
    let writing = interrupt::Writing::start(interrupt::Pending {
        created: crate::runtime::missing_dirs(parent_dir(out)),
        tmp: tmp.clone(),
        out: out.to_path_buf(),
    });
    let made = {
        let _held = writing.hold();
        prepare_parent(out).and_then(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))
        })
    };
    if let Err(e) = made.and_then(|_| fill(&tmp)).and_then(|_| sync_dir(&tmp)) {
        writing.undo();
        return Err(e.context(format!(
            "--out {}: nothing was written there",
            out.display()
        )));
    }
    // A signal from here waits until the result is in place, then ends the process.
    let held = writing.hold();
    if !replace {
        return match std::fs::rename(&tmp, out) {
            Ok(()) => {
                writing.done(held);
                Ok(())
            }
            Err(e) => {
                drop(held);
                writing.undo();
                // Another run wrote it while this one computed (it was checked absent).
                let taken = match out.exists() {
                    true => "; it appeared while this run computed (another run wrote it?): pass --force to replace it",
                    false => "",
                };
                bail!(
                    "--out {}: nothing was written there: cannot move the result in: {e}{taken}",
                    out.display()
                )
            }
        };
    }
    // One atomic swap where the filesystem has it: a kill at any point leaves `out` whole,
    // old or new (the old one then lies in the temporary, removed by the next write).
    match exchange(&tmp, out) {
        Ok(()) => {
            writing.done(held);
            std::fs::remove_dir_all(&tmp).with_context(|| {
                format!(
                    "{} was written, but the directory it replaced, swapped to {}, could not be removed",
                    out.display(),
                    tmp.display()
                )
            })
        }
        Err(_) => {
            let replaced = replace_by_renames(&tmp, out);
            writing.done(held);
            replaced
        }
    }
}

/// SIGINT, SIGTERM or SIGHUP while a write is unfinished: its temporary and the parent
/// directories it created go, one line says so, and the process ends as the signal would
/// (130, 143, 129 in a shell). Only a kill -9 leaves them (`remove_stale_partials`).
mod interrupt {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    /// What an unfinished write has made.
    pub struct Pending {
        pub tmp: PathBuf,
        pub created: Vec<PathBuf>,
        pub out: PathBuf,
    }

    impl Pending {
        fn remove(&self) {
            // A signal's removal runs beside the writing thread, which may add a file
            // after the listing, so the last rmdir finds the directory not empty (CI saw
            // the parents left behind once): again until it is gone. Nothing makes it
            // anew once it is.
            for _ in 0..1000 {
                if std::fs::remove_dir_all(&self.tmp).is_ok() || !self.tmp.exists() {
                    break;
                }
            }
            for dir in &self.created {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    type Map = BTreeMap<u64, Pending>;
    /// Unfinished writes, by id (a test process runs several at once). Held while a write
    /// creates or moves its directories, so a signal never finds them half made.
    static PENDING: Mutex<Map> = Mutex::new(BTreeMap::new());

    fn pending() -> MutexGuard<'static, Map> {
        PENDING.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub struct Writing(u64);

    impl Writing {
        pub fn start(p: Pending) -> Writing {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            watch();
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            pending().insert(id, p);
            Writing(id)
        }

        /// Signals wait while this is held.
        pub fn hold(&self) -> MutexGuard<'static, Map> {
            pending()
        }

        /// The result is in place: nothing is removed any more.
        pub fn done(&self, mut held: MutexGuard<'static, Map>) {
            held.remove(&self.0);
        }

        /// Remove what the write made.
        pub fn undo(&self) {
            if let Some(p) = pending().remove(&self.0) {
                p.remove();
            }
        }
    }

    impl Drop for Writing {
        fn drop(&mut self) {
            self.undo();
        }
    }

    /// The handler thread, started once; a signal ignored at start (nohup) stays ignored.
    fn watch() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let sigs = [SIGINT, SIGTERM, SIGHUP]
                .into_iter()
                .filter(|s| !crate::runtime::ignored_at_start(*s));
            let started = signal_hook::iterator::Signals::new(sigs).and_then(|mut signals| {
                std::thread::Builder::new()
                    .name("arborist-signals".into())
                    .spawn(move || {
                        if let Some(sig) = signals.forever().next() {
                            ended_by(sig)
                        }
                    })
            });
            if let Err(e) = started {
                tracing::warn!("no signal handler for writing --out: {e}");
            }
        });
    }

    fn ended_by(sig: i32) -> ! {
        use std::io::{IsTerminal, Write};
        // Held to the end: the writing thread neither goes on nor reports its own error.
        let pending = pending();
        // After the terminal's `^C`; a failed write (a hung-up terminal) must not panic.
        let nl = if std::io::stderr().is_terminal() {
            "\n"
        } else {
            ""
        };
        for p in pending.values() {
            p.remove();
            let out = p.out.display();
            let _ = writeln!(
                std::io::stderr(),
                "{nl}error: interrupted: nothing was written to {out}"
            );
        }
        let _ = signal_hook::low_level::emulate_default_handler(sig);
        std::process::exit(128 + sig)
    }
}

/// Flush the written files and the directory to disk before they are renamed into place:
/// otherwise a power loss or OS crash after the rename could leave `out` in place with
/// empty or short files (a killed process cannot: the kernel still writes them).
fn sync_dir(dir: &Path) -> Result<()> {
    let sync = |p: &Path| -> Result<()> {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot flush {} to disk", p.display()))
    };
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = e?.path();
        if p.is_file() {
            sync(&p)?;
        }
    }
    sync(dir)
}

/// Swaps two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
        let (ca, cb) = (c(a)?, c(b)?);
        // SAFETY: two valid NUL-terminated paths; the call touches nothing else.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// Where the swap is not supported: the old directory is moved aside, not deleted, until
/// the new one is in place, so a failure at any step leaves `out` as it was; a kill between
/// the two renames leaves it aside, and the next write to `out` puts it back.
fn replace_by_renames(tmp: &Path, out: &Path) -> Result<()> {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let aside = tmp.with_file_name(format!(
        "{}{}",
        crate::runtime::hidden_prefix(&name, ".replaced-"),
        crate::runtime::owner_tag()
    ));
    if let Err(e) = std::fs::rename(out, &aside) {
        let _ = std::fs::remove_dir_all(tmp);
        bail!(
            "cannot replace {}: {e}; it was left as it was",
            out.display()
        );
    }
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::remove_dir_all(tmp);
        let back = std::fs::rename(&aside, out);
        bail!(
            "cannot move the result into {}: {e}; {}",
            out.display(),
            match back {
                Ok(()) => "the old directory was put back".to_string(),
                Err(b) => format!("the old directory is at {} ({b})", aside.display()),
            }
        );
    }
    std::fs::remove_dir_all(&aside).with_context(|| {
        format!(
            "{} was written, but the directory it replaced, moved to {}, could not be removed",
            out.display(),
            aside.display()
        )
    })
}

/// The dtype the source stores its weights in, when every value of the pruned model is
/// exact there (pruning that only masks); else the dtype the model ran in, so that the
/// written model is always the one that was evaluated.
fn save_dtype(d: &Decoder, src: &ModelFiles, tensors: &[(String, Stored<'_>)]) -> Result<DType> {
    let files = crate::model::weights::WeightFiles::open(&src.weights)?;
    // A tied checkpoint may hold its embedding as `lm_head.weight` only.
    let embed = crate::model::weights::embed_source(&files, &d.cfg);
    let Some(dt) = files.stored_dtype(embed).filter(|dt| *dt != d.dtype) else {
        return Ok(d.dtype);
    };
    // A streamed layer is its file's values, masked: exact in the file's dtype whenever
    // the run's dtype holds them (f32, f64), so it is not read a second time to check.
    let wide = matches!(d.dtype, DType::F32 | DType::F64);
    for (name, s) in tensors {
        let from_file =
            matches!(s, Stored::Linear(l) if !l.weight_resident() && !l.dense_resident());
        if from_file && wide && files.stored_dtype(name) == Some(dt) {
            continue;
        }
        if !crate::model::save::exact_in(&s.tensor()?, dt)? {
            return Ok(d.dtype);
        }
    }
    Ok(dt)
}

const ADDITIONAL_TEMPLATES: &str = "additional_chat_templates";

fn write_all(
    d: &Decoder,
    src: &ModelFiles,
    dir: &Path,
    max_shard: u64,
    metadata: &mut serde_json::Value,
) -> Result<()> {
    // `dir` exists (write_dir_atomically made it): created here again, it could outlive a
    // signal's cleanup.
    let text = std::fs::read_to_string(&src.config)
        .with_context(|| format!("cannot read {}", src.config.display()))?;
    let mut cfg: serde_json::Value = serde_json::from_str(&text)?;
    let tensors = d.named_tensors();
    let save = save_dtype(d, src, &tensors)?;
    let dtype = crate::model::device::dtype_name(save);
    // `dtype` is the one the model ran in; the file may keep the source's narrower one.
    metadata["weights_dtype"] = dtype.into();
    let torch = match dtype {
        "f16" => "float16",
        "bf16" => "bfloat16",
        "f64" => "float64",
        _ => "float32",
    };
    let removed = cfg["num_hidden_layers"].as_u64() != Some(d.blocks.len() as u64);
    cfg["num_hidden_layers"] = d.blocks.len().into();
    if cfg.get("layer_types").is_some() {
        cfg["layer_types"] = d
            .blocks
            .iter()
            .map(|b| {
                if b.window.is_some() {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect::<Vec<_>>()
            .into();
    }
    // transformers' Qwen2/Qwen3 without `layer_types`: blocks from `max_window_layers` on
    // slide. Removed blocks (ShortGPT) move that boundary; the sliding ones stay a suffix.
    if removed && cfg["use_sliding_window"] == true {
        let full = d.blocks.iter().take_while(|b| b.window.is_none()).count();
        if d.blocks[full..].iter().all(|b| b.window.is_some()) {
            cfg["max_window_layers"] = full.into();
        }
    }
    // A tied config whose weights held a different head: the head is used and written, so
    // the config must say untied (transformers 4 and vLLM would tie it again).
    if !d.cfg.tie_word_embeddings && cfg["tie_word_embeddings"] == true {
        cfg["tie_word_embeddings"] = false.into();
    }
    // transformers 5 writes `dtype`, earlier versions `torch_dtype`: the keys the source
    // has (the older one when it has neither).
    if cfg.get("torch_dtype").is_some() || cfg.get("dtype").is_none() {
        cfg["torch_dtype"] = torch.into();
    }
    if cfg.get("dtype").is_some() {
        cfg["dtype"] = torch.into();
    }
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
    let src_dir = src.config.parent().unwrap_or(Path::new("."));
    let side = crate::model::source::SIDE_FILES
        .iter()
        .map(|f| (src_dir.join(f), *f));
    let mut copied = Vec::new();
    for (p, f) in std::iter::once((src.tokenizer.clone(), "tokenizer.json")).chain(side) {
        if p.is_file() {
            std::fs::copy(&p, dir.join(f))
                .with_context(|| format!("cannot copy {}", p.display()))?;
            copied.push(f.to_string());
        }
    }
    // Named templates beside chat_template.jinja (transformers 4.5x and later).
    let templates = src_dir.join(ADDITIONAL_TEMPLATES);
    if templates.is_dir() {
        std::fs::create_dir(dir.join(ADDITIONAL_TEMPLATES))?;
        for e in std::fs::read_dir(&templates)? {
            let p = e?.path();
            if p.is_file() {
                let f = format!(
                    "{ADDITIONAL_TEMPLATES}/{}",
                    p.file_name().unwrap().to_string_lossy()
                );
                std::fs::copy(&p, dir.join(&f))
                    .with_context(|| format!("cannot copy {}", p.display()))?;
                copied.push(f);
            }
        }
    }
    if !dir.join("tokenizer_config.json").exists() {
        std::fs::write(
            dir.join("tokenizer_config.json"),
            crate::model::save::FAST_TOKENIZER_CONFIG,
        )?;
    }
    let written = crate::model::shards::write_weights(tensors, save, dir, max_shard)?;
    // The safetensors writer creates its files private (0600), and copies keep their
    // source's mode (0444 for a hub cache's blobs): give them all the mode config.json got
    // from the umask, so the directory's files are alike to whoever can read it.
    let mode = std::fs::metadata(dir.join("config.json"))?.permissions();
    for f in written.iter().chain(&copied) {
        std::fs::set_permissions(dir.join(f), mode.clone())?;
    }
    std::fs::write(
        dir.join("arborist.json"),
        serde_json::to_string_pretty(metadata)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // `--out` under a file used to fail only after the pruning, when the result was moved.
    #[test]
    fn an_out_path_under_a_file_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("afile");
        std::fs::write(&file, "x").unwrap();
        let err = format!("{:#}", check_out_dir(&file.join("x/y"), false).unwrap_err());
        assert!(err.contains("afile is not a directory"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!check_out_dir(&dir.path().join("new/deeper"), false).unwrap());
        assert!(
            !dir.path().join("new").exists(),
            "checking must not create anything"
        );
    }

    // A write killed mid-way leaves `.NAME.partial-PID`; the next write of the same output
    // removes it once that PID is gone, and keeps a live process's.
    #[test]
    fn an_out_holding_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m");
        std::fs::create_dir_all(model.join("data")).unwrap();
        let calib = model.join("data/calib.txt");
        std::fs::write(&calib, "text").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&calib, &link).unwrap();
        for out in [model.clone(), dir.path().to_path_buf(), model.join(".")] {
            let e = check_inputs_outside(&out, &[("--calib", &calib)]).unwrap_err();
            assert!(e.to_string().contains("holds --calib"), "{e}");
        }
        // A link outside whose file is inside, and a relative spelling of the same file.
        let e = check_inputs_outside(&model, &[("--calib", &link)]).unwrap_err();
        assert!(e.to_string().contains("would delete"), "{e}");
        // A sibling directory, or one that does not exist yet, is fine.
        let other = dir.path().join("out");
        check_inputs_outside(&other, &[("--calib", &calib)]).unwrap();
        std::fs::create_dir(&other).unwrap();
        check_inputs_outside(&other, &[("--calib", &calib)]).unwrap();
        check_inputs_outside(&model.join("data2"), &[("--calib", &calib)]).unwrap();
    }

    // A failed write removes the parent directories it created (they were left behind),
    // and a link as --out is refused before any work (a dangling one failed at the end).
    #[test]
    fn a_failed_write_leaves_no_directory_and_links_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a/b/c");
        let e = write_dir_atomically(&out, false, |_| bail!("disk full")).unwrap_err();
        assert!(
            format!("{e:#}").contains("nothing was written there"),
            "{e:#}"
        );
        assert!(!d.path().join("a").exists());
        for target in ["nowhere", "."] {
            let link = d.path().join(format!("link-{}", target.len()));
            std::os::unix::fs::symlink(target, &link).unwrap();
            let e = check_out_dir(&link, true).unwrap_err().to_string();
            assert!(
                e.contains("is a symbolic link (to ") && e.contains("give the directory itself"),
                "{e}"
            );
        }
    }

    // A --force replace by renames that cannot move the old directory aside leaves it
    // untouched and no temporary behind; one that can (and the swap) puts the new one in
    // place and leaves nothing else.
    #[test]
    fn a_forced_replace_keeps_the_old_directory_until_the_new_one_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("old"), "x").unwrap();
        let write_new = |tmp: &Path| -> Result<()> {
            std::fs::create_dir_all(tmp)?;
            Ok(std::fs::write(tmp.join("new"), "y")?)
        };
        // A non-empty directory where the old one would go makes the move aside fail.
        let aside = dir
            .path()
            .join(format!(".o.replaced-{}", crate::runtime::owner_tag()));
        std::fs::create_dir_all(aside.join("busy")).unwrap();
        prepare_parent(&out).unwrap();
        let tmp = temp_path(&out).unwrap();
        write_new(&tmp).unwrap();
        let e = replace_by_renames(&tmp, &out).unwrap_err();
        assert!(format!("{e:#}").contains("left as it was"), "{e:#}");
        assert!(out.join("old").exists() && !out.join("new").exists());
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(dir.path()),
            [
                format!(".o.replaced-{}", crate::runtime::owner_tag()),
                "o".into()
            ]
        );
        std::fs::remove_dir_all(&aside).unwrap();
        prepare_parent(&out).unwrap();
        let tmp = temp_path(&out).unwrap();
        write_new(&tmp).unwrap();
        replace_by_renames(&tmp, &out).unwrap();
        assert!(out.join("new").exists() && !out.join("old").exists());
        assert_eq!(names(dir.path()), ["o"]);
        // The swap: the same result.
        std::fs::write(out.join("old"), "x").unwrap();
        std::fs::remove_file(out.join("new")).unwrap();
        write_dir_atomically(&out, true, write_new).unwrap();
        assert!(out.join("new").exists() && !out.join("old").exists());
        assert_eq!(names(dir.path()), ["o"]);
        assert!(exchange(&out, &dir.path().join("missing")).is_err());
        let other = dir.path().join("p");
        std::fs::create_dir_all(&other).unwrap();
        exchange(&out, &other).unwrap();
        assert!(other.join("new").exists() && !out.join("new").exists());
    }

    // A replace killed between its two renames left the old directory aside and no `out`:
    // the next write puts it back before it checks `out` (so it needs --force to replace
    // it, and says so before any work); with an `out` there, the leftover is removed.
    #[test]
    fn an_old_directory_left_aside_by_a_dead_process_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o");
        let aside = dir.path().join(".o.replaced-4294967294");
        std::fs::create_dir_all(&aside).unwrap();
        std::fs::write(aside.join("old"), "x").unwrap();
        let write_new = |tmp: &Path| -> Result<()> {
            std::fs::create_dir_all(tmp)?;
            Ok(std::fs::write(tmp.join("new"), "y")?)
        };
        let e = write_dir_atomically(&out, false, write_new).unwrap_err();
        assert!(format!("{e:#}").contains("pass --force"), "{e:#}");
        assert!(out.join("old").exists() && !aside.exists());
        write_dir_atomically(&out, true, write_new).unwrap();
        assert!(out.join("new").exists() && !out.join("old").exists());
        std::fs::create_dir_all(&aside).unwrap();
        check_out_dir(&out, false).unwrap_err();
        assert!(out.join("new").exists() && !aside.exists());
    }

    #[test]
    fn partial_directories_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("outp");
        let dead = dir.path().join(".outp.partial-4294967294");
        let live = dir.path().join(format!(
            ".outp.partial-{}",
            std::os::unix::process::parent_id()
        ));
        let other = dir.path().join(".other.partial-4294967294");
        // A process of another machine sharing the filesystem cannot be told gone.
        let elsewhere = dir.path().join(".outp.partial-another-host-4294967294");
        let dead_here = dir.path().join(format!(
            ".outp.partial-{}",
            crate::runtime::owner_tag_of(4294967294)
        ));
        for d in [&dead, &live, &other, &elsewhere, &dead_here] {
            std::fs::create_dir_all(d).unwrap();
        }
        write_dir_atomically(&out, false, |tmp| {
            std::fs::create_dir_all(tmp)?;
            Ok(std::fs::write(tmp.join("f"), "y")?)
        })
        .unwrap();
        assert!(out.join("f").exists());
        assert!(!dead.exists(), "a dead process's partial directory stays");
        assert!(!dead_here.exists(), "a dead process of this host's stays");
        assert!(
            elsewhere.exists(),
            "another machine's partial directory was removed"
        );
        assert!(
            live.exists() && other.exists(),
            "only this output's dead partials go"
        );
    }
}
