//! Headless review: approve everything, or follow a scripted decisions file so that
//! human-in-the-loop runs are reproducible and testable.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::events::{Decision, Event};
use crate::agent::LayerTarget;

/// One line of a decisions file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scripted {
    pub iteration: usize,
    /// approve, edit, override, reject or stop.
    pub action: String,
    #[serde(default)]
    pub layers: Vec<LayerTarget>,
    #[serde(default)]
    pub reasoning: String,
    #[serde(default)]
    pub feedback: String,
}

/// What the headless reviewer does with a proposal.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Decide(Decision),
    Stop,
}

pub struct HeadlessReviewer {
    script: VecDeque<Scripted>,
    path: Option<PathBuf>,
    auto_approve: bool,
}

impl HeadlessReviewer {
    pub fn new(decisions: Option<&Path>, auto_approve: bool) -> Result<HeadlessReviewer> {
        let script = match decisions {
            Some(p) => load(p)?,
            None if auto_approve => VecDeque::new(),
            None => bail!("a headless run needs --auto-approve or --decisions FILE"),
        };
        Ok(HeadlessReviewer {
            script,
            path: decisions.map(Path::to_path_buf),
            auto_approve,
        })
    }

    /// On resume: drop the scripted decisions the session file already recorded, and those
    /// of iterations skipped for want of a valid proposal.
    pub fn skip_recorded<'a>(&mut self, recorded: impl IntoIterator<Item = &'a Event>) {
        for ev in recorded {
            match ev {
                Event::Decided { by, .. } | Event::StopRequested { by } if by == "script" => {
                    self.script.pop_front();
                }
                Event::Decided { iteration, .. } if ev.skipped_for_the_agent() => {
                    self.drop_all(*iteration);
                }
                _ => {}
            }
        }
    }

    /// The agent gave iteration `iteration` no valid proposal: the decisions scripted for
    /// it have nothing to decide and are dropped (they stopped the next review as "never
    /// used", and a resume the same way), all but a stop, which is about the session and
    /// still stops it (`stops_at`; it was dropped too, and the run went on). Returns how
    /// many were dropped.
    pub fn drop_unanswerable(&mut self, iteration: usize) -> usize {
        let stop = (self.script.iter())
            .take_while(|s| s.iteration == iteration)
            .find(|s| s.action == "stop")
            .cloned();
        let n = self.drop_all(iteration);
        match stop {
            Some(s) => {
                self.script.push_front(s);
                n - 1
            }
            None => n,
        }
    }

    /// Every scripted decision of `iteration` dropped: it was skipped for want of a
    /// proposal (a file recorded that way is resumed that way). Returns how many.
    fn drop_all(&mut self, iteration: usize) -> usize {
        let n = self
            .script
            .iter()
            .take_while(|s| s.iteration == iteration)
            .count();
        self.script.drain(..n);
        n
    }

    /// The next scripted decision is a stop at `iteration`.
    pub fn stops_at(&self, iteration: usize) -> bool {
        (self.script.front()).is_some_and(|s| s.iteration == iteration && s.action == "stop")
    }

    /// The decisions file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// "script" when the decision came from the file, "auto" otherwise.
    pub fn review(&mut self, iteration: usize) -> Result<(String, Verdict)> {
        let name = self
            .path
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string());
        match self.script.front() {
            Some(s) if s.iteration < iteration => bail!(
                "{name}: decision for iteration {} was never used (the session is at iteration {iteration})",
                s.iteration
            ),
            Some(s) if s.iteration == iteration => {
                let s = self.script.pop_front().expect("front exists");
                Ok(("script".into(), verdict(&s, &name)?))
            }
            _ if self.auto_approve => Ok(("auto".into(), Verdict::Decide(Decision::Approve))),
            _ => bail!("{name}: no decision for iteration {iteration} (add one or pass --auto-approve)"),
        }
    }
}

fn verdict(s: &Scripted, file: &str) -> Result<Verdict> {
    let it = s.iteration;
    let out_of_range = s.layers.iter().find(|l| !(0.0..1.0).contains(&l.sparsity));
    if let ("edit" | "override", Some(l)) = (s.action.as_str(), out_of_range) {
        bail!(
            "{file}: iteration {it}: sparsity {} for `{}` is outside [0, 1)",
            l.sparsity,
            l.name
        );
    }
    Ok(Verdict::Decide(match s.action.as_str() {
        "approve" => Decision::Approve,
        "edit" | "override" if s.layers.is_empty() => {
            bail!("{file}: iteration {it}: `{}` needs a non-empty `layers` list", s.action)
        }
        "edit" => Decision::Edit {
            layers: s.layers.clone(),
        },
        "override" => Decision::Override {
            layers: s.layers.clone(),
            reasoning: s.reasoning.clone(),
        },
        "reject" if s.feedback.trim().is_empty() => {
            bail!("{file}: iteration {it}: `reject` needs `feedback` text for the agent")
        }
        "reject" => Decision::Reject {
            feedback: s.feedback.clone(),
        },
        "skip" => Decision::Skip,
        "stop" => return Ok(Verdict::Stop),
        other => bail!(
            "{file}: iteration {it}: unknown action `{other}` (approve, edit, override, reject, skip or stop)"
        ),
    }))
}

fn load(path: &Path) -> Result<VecDeque<Scripted>> {
    crate::runtime::refuse_device(path).context("--decisions")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read decisions file {}", path.display()))?;
    let list: Vec<Scripted> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    };
    if list.is_empty() {
        bail!(
            "{}: no decisions (pass --auto-approve to approve every proposal)",
            path.display()
        );
    }
    // Every entry is checked now, before any work, not when its iteration comes.
    let name = path.display().to_string();
    for s in &list {
        // Iterations count from 1: an entry for 0 was found only once iteration 1 had run.
        if s.iteration == 0 {
            bail!("{name}: iteration 0: iterations count from 1 (0 is the starting model)");
        }
        verdict(s, &name)?;
    }
    for w in list.windows(2) {
        if w[1].iteration < w[0].iteration {
            bail!(
                "{}: decisions must be in iteration order ({} after {})",
                path.display(),
                w[1].iteration,
                w[0].iteration
            );
        }
    }
    Ok(list.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_for_iteration_0_is_refused_at_load() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("d.yaml");
        std::fs::write(&f, "- {iteration: 0, action: approve}\n").unwrap();
        let e = format!("{:#}", load(&f).unwrap_err());
        assert!(
            e.contains("d.yaml: iteration 0: iterations count from 1"),
            "{e}"
        );
    }

    // An iteration the agent left without a proposal is skipped; its scripted decisions
    // go with it, live and on resume, so the next iteration's are used.
    #[test]
    fn decisions_of_a_skipped_iteration_are_dropped() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("d.yaml");
        std::fs::write(
            &f,
            "- {iteration: 1, action: reject, feedback: no}\n- {iteration: 1, action: approve}\n- {iteration: 2, action: skip}\n",
        )
        .unwrap();
        let mut live = HeadlessReviewer::new(Some(&f), false).unwrap();
        assert_eq!(live.review(1).unwrap().0, "script");
        assert_eq!(live.drop_unanswerable(1), 1);
        assert_eq!(live.review(2).unwrap().1, Verdict::Decide(Decision::Skip));
        let recorded = [
            Event::Decided {
                iteration: 1,
                by: "script".into(),
                decision: Decision::Reject {
                    feedback: "no".into(),
                },
            },
            Event::Decided {
                iteration: 1,
                by: "auto".into(),
                decision: Decision::Skip,
            },
        ];
        let mut resumed = HeadlessReviewer::new(Some(&f), false).unwrap();
        resumed.skip_recorded(&recorded);
        assert_eq!(
            resumed.review(2).unwrap().1,
            Verdict::Decide(Decision::Skip)
        );
    }
}
