//! Where a recorded session's model and data live on this machine: a colleague's session
//! names their paths. A new path is taken only where the header can prove it holds the
//! same thing: the model's fingerprint, the windows' and probe items' hashes.

use anyhow::{bail, Result};
use clap::Args;

use crate::session::file::DataHashes;
use crate::session::RunOptions;
use crate::worker::launch;

#[derive(Args, Debug, Clone, Default)]
pub struct Relocate {
    /// The session's model, found elsewhere (checked against the header's fingerprint).
    #[arg(long)]
    pub model: Option<String>,
    /// The session's calibration text, found elsewhere (checked against its hash).
    #[arg(long)]
    pub calib: Option<String>,
    /// The session's evaluation text, found elsewhere (checked against its hash).
    #[arg(long)]
    pub eval: Option<String>,
    /// The session's probe benchmark file, found elsewhere (checked against its hash).
    #[arg(long)]
    pub probe_file: Option<String>,
}

impl Relocate {
    /// The header's options with the given paths in place of the recorded ones. The model
    /// and data are checked later, when they are read (fingerprint, `setup::check_data`);
    /// here only that the header holds what they will be checked against.
    pub fn apply(
        &self,
        recorded: &RunOptions,
        data: &DataHashes,
        session: &str,
    ) -> Result<RunOptions> {
        let mut o = recorded.clone();
        let hashed = |flag: &str, key: &str| -> Result<()> {
            if data.contains_key(key) {
                return Ok(());
            }
            bail!(
                "--{flag}: {session} records no hash of its {key} data (it predates them), so \
                 another file cannot be checked against it; put the path in its header's \
                 options instead"
            )
        };
        if let Some(m) = &self.model {
            // A `bundled` session's texts (and probe set) are the bundled model's, implied by
            // its name: a copy of that model elsewhere still reads them (it was refused with
            // "--calib FILE is required for a model other than `bundled`").
            let bundled = crate::model::bundled::NAME;
            if recorded.model == bundled && m != bundled {
                let path = |p: std::path::PathBuf| Some(p.display().to_string());
                if o.calib.is_none() {
                    o.calib = path(launch::text_path(&None, "calib", recorded)?);
                }
                if o.eval.is_none() {
                    o.eval = path(launch::text_path(&None, "eval", recorded)?);
                }
                if let Some(p) = o.probe.as_mut().filter(|p| p.file.is_none()) {
                    p.file = path(launch::probe_path(p, recorded)?);
                }
            }
            o.model = m.clone();
        }
        if let Some(c) = &self.calib {
            hashed("calib", "calib")?;
            o.calib = Some(c.clone());
        }
        if let Some(e) = &self.eval {
            hashed("eval", "eval")?;
            o.eval = Some(e.clone());
        }
        if let Some(f) = &self.probe_file {
            let Some(p) = o.probe.as_mut() else {
                bail!("--probe-file: {session} was recorded without a knowledge probe");
            };
            hashed("probe-file", "probe")?;
            p.file = Some(f.clone());
        }
        Ok(o)
    }

    /// Files the session names (after relocation) that are not on this machine, said before
    /// anything loads, all in one line with the flags that give their places here (one a
    /// run took five tries on a colleague's session). The model only when its name cannot
    /// be a hub id (`owner/name`, which only resolving can tell).
    pub fn check_present(&self, o: &RunOptions, session: &str) -> Result<()> {
        // A session on a model other than bundled records its texts: a header without them
        // was edited, and is named, not a flag the command was never given.
        for (key, text) in [("calib", &o.calib), ("eval", &o.eval)] {
            if text.is_none() && o.model != crate::model::bundled::NAME {
                bail!(
                    "{session}: its header names the model {} but no `options.{key}` text (a \
                     session on a model other than bundled records both; was the header \
                     edited?)",
                    o.model
                );
            }
        }
        let mut files = vec![
            (
                "calib",
                self.calib.is_some(),
                launch::text_path(&o.calib, "calib", o)?,
            ),
            (
                "eval",
                self.eval.is_some(),
                launch::text_path(&o.eval, "eval", o)?,
            ),
        ];
        if let Some(p) = &o.probe {
            let given = self.probe_file.is_some();
            files.push(("probe-file", given, launch::probe_path(p, o)?));
        }
        // A path given here that is wrong is the command's own mistake: said first, alone.
        for (flag, given, path) in &files {
            if *given && !path.is_file() {
                bail!("--{flag} {}: no such file", path.display());
            }
        }
        let model = std::path::Path::new(&o.model);
        // A relative `owner/name` that is not here may be a hub id: resolving says.
        let local = !crate::model::source::looks_like_hub_id(&o.model);
        let mut missing: Vec<(String, String, bool)> = Vec::new();
        if self.hints_model(o) && local && !model.exists() {
            missing.push((
                format!("its model {}", o.model),
                "--model DIR".to_string(),
                model.is_relative(),
            ));
        }
        for (flag, _, path) in &files {
            if !path.exists() {
                let what = format!("its --{flag} file {}", path.display());
                missing.push((what, format!("--{flag} FILE"), path.is_relative()));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // A relative path is looked up from here, which may just be another directory.
        let from = match std::env::current_dir() {
            Ok(d) if missing.iter().any(|m| m.2) => {
                format!(" (relative paths are looked up from {})", d.display())
            }
            _ => String::new(),
        };
        let what: Vec<&str> = missing.iter().map(|m| m.0.as_str()).collect();
        let flags: Vec<&str> = missing.iter().map(|m| m.1.as_str()).collect();
        bail!(
            "{session}: {} not on this machine{from}; give {} where {} (fingerprint and \
             hashes are checked)",
            match what.len() {
                1 => format!("{} is", what[0]),
                _ => format!("{} are", what.join(", ")),
            },
            flags.join(", "),
            if flags.len() == 1 {
                "it is"
            } else {
                "they are"
            }
        )
    }

    /// What a session whose recorded model does not resolve is told, unless `--model` was
    /// given (then the error names that one).
    pub fn model_hint(&self, session: &str, o: &RunOptions) -> Option<String> {
        self.hints_model(o).then(|| {
            format!(
                "{session}: its model is not where it was recorded (pass --model DIR where it \
                 is here; its fingerprint is checked)"
            )
        })
    }

    /// No `--model` was given, and the recorded model is one that can move (not `bundled`).
    fn hints_model(&self, o: &RunOptions) -> bool {
        self.model.is_none() && o.model != crate::model::bundled::NAME
    }

    /// The flags, in the order of `values`.
    pub const FLAGS: [&'static str; 4] = ["--model", "--calib", "--eval", "--probe-file"];

    fn values(&self) -> [&Option<String>; 4] {
        [&self.model, &self.calib, &self.eval, &self.probe_file]
    }

    /// The flags again, for a command that runs another `arborist` on the same session.
    pub fn args(&self) -> Vec<String> {
        Self::FLAGS
            .into_iter()
            .zip(self.values())
            .filter_map(|(flag, v)| v.as_ref().map(|v| [flag.to_string(), v.clone()]))
            .flatten()
            .collect()
    }
}
