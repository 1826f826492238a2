//! Prompt rendering with minijinja. Built-in templates are embedded; a user directory may
//! override any of them by file name. Undefined variables are errors (strict), so a typo in
//! a user template fails loudly instead of sending the model a silently blank prompt.

use std::path::Path;

use anyhow::{bail, Context, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde::Serialize;

use super::context::{
    kind_order, model_order, AgentContext, LayerChange, LayerRow, Proposal, StepOutcome,
};
use super::parse::{frac, max_target, shown};
use super::percent::percent;

pub const SYSTEM: &str = "system.j2";
pub const STEP: &str = "step.j2";
pub const REFLECTION: &str = "reflection.j2";
pub const REPAIR: &str = "repair.j2";

const BUILTIN: [(&str, &str); 4] = [
    (SYSTEM, include_str!("../../prompts/system.j2")),
    (STEP, include_str!("../../prompts/step.j2")),
    (REFLECTION, include_str!("../../prompts/reflection.j2")),
    (REPAIR, include_str!("../../prompts/repair.j2")),
];

pub struct Templates {
    env: Environment<'static>,
    /// Where each template came from, for error messages and the session header.
    origins: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("origins", &self.origins)
            .finish()
    }
}

impl Templates {
    pub fn builtin() -> Templates {
        Templates::load(None).expect("built-in prompt templates compile")
    }

    /// Built-ins, with any `system.j2`, `step.j2`, `reflection.j2` or `repair.j2` found in
    /// `dir` taking their place.
    pub fn load(dir: Option<&Path>) -> Result<Templates> {
        if let Some(d) = dir {
            check_dir(d)?;
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Spans in errors, so an undefined value can be named.
        env.set_debug(true);
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters");
        env.set_syntax(syntax);
        env.add_filter("fixed", |v: f64, digits: Option<usize>| {
            format!("{v:.*}", digits.unwrap_or(3))
        });
        env.add_filter("sci", |v: f64| format!("{v:.3e}"));
        // `x|pct(limit)`: as many decimals as tell x from the limit beside it.
        env.add_filter("pct", |v: f64, beside: Option<f64>| {
            format!("{}%", percent(v, beside, false))
        });
        env.add_filter("signed_pct", |v: f64, beside: Option<f64>| {
            format!("{}%", percent(v, beside, true))
        });
        // A fraction as percentage points, without the sign: 0.025 is 2.5.
        env.add_filter("points", |v: f64| percent(v, None, false));
        env.add_filter("frac", frac);
        env.add_filter("exact", shown);
        // The run's option, not the context's: set by `set_grad_average`.
        env.add_global(
            "grad_average",
            crate::profile::grad_average::GradAverage::default().name(),
        );
        let mut origins = Vec::new();
        for (name, builtin) in BUILTIN {
            let user = dir.map(|d| (d, d.join(name))).filter(|(_, p)| p.is_file());
            let (origin, source) = match user {
                Some((d, p)) => {
                    let s = std::fs::read_to_string(&p)
                        .with_context(|| format!("prompt template {}", p.display()))?;
                    // Every request would go out with a blank prompt, and be paid for.
                    if s.trim().is_empty() {
                        let what = if s.is_empty() {
                            "is empty"
                        } else {
                            "holds only whitespace"
                        };
                        bail!(
                            "--prompts {}: {name} {what} (remove it to use the built-in)",
                            d.display()
                        );
                    }
                    (p.display().to_string(), s)
                }
                None => (format!("built-in prompts/{name}"), builtin.to_string()),
            };
            if let Err(e) = env.add_template_owned(name, source) {
                bail!("prompt template {origin}: {}", describe(&e));
            }
            origins.push((name, origin));
        }
        let t = Templates { env, origins };
        t.check()?;
        Ok(t)
    }

    /// Renders every template against example contexts (with and without history,
    /// reflections and feedback; accepted and rolled-back, edited and not), so that a typo
    /// in a variable name fails before the session starts rather than at its first use.
    fn check(&self) -> Result<()> {
        let mut full = AgentContext::example();
        full.ceiling = Some(0.2);
        full.probe_max_drop = Some(0.05);
        full.probe = Some(super::context::ProbeView {
            kind: "freebaseqa".into(),
            items: 40,
            dense: 0.5,
            now: 0.475,
        });
        for (i, h) in full.history.iter_mut().enumerate() {
            h.probe_before = Some(0.5);
            h.probe_after = Some(0.5 - 0.025 * i as f64);
        }
        let mut first = AgentContext::example();
        first.iteration = 1;
        first.history.clear();
        first.reflections.clear();
        first.feedback = None;
        first.rejected = None;
        first.earlier_feedback.clear();
        let proposal = Proposal {
            layers: vec![super::context::LayerTarget {
                name: full.layers[0].name.clone(),
                sparsity: full.layers[0].sparsity + full.bounds.max_step / 2.0,
            }],
            reasoning: "example".into(),
        };
        let problems = ["example: unknown layer name".to_string()];
        // A blank render is reported last: a typo in a branch another context takes is the
        // better message.
        let mut blank = None;
        let mut rendered = |r: Result<String>| match r {
            Err(e) if e.is::<Blank>() => {
                blank.get_or_insert(e);
                Ok(())
            }
            r => r.map(drop),
        };
        for ctx in [&full, &first] {
            rendered(self.system(ctx))?;
            rendered(self.step(ctx))?;
            rendered(self.repair(ctx, &problems))?;
            for o in &full.history {
                for edited in [false, true] {
                    let o = StepOutcome {
                        edited,
                        ..o.clone()
                    };
                    rendered(self.reflection(ctx, &proposal, &o))?;
                }
            }
        }
        let step = val(StepView::new(&full));
        self.names_defined(SYSTEM, &step)?;
        self.names_defined(STEP, &step)?;
        self.names_defined(REPAIR, &val(repair_view(&full, &problems)))?;
        let outcome = &full.history[1];
        let view = reflection_view(&full, &proposal, outcome);
        self.names_defined(REFLECTION, &val(view))?;
        blank.map_or(Ok(()), Err)
    }

    /// How the profile averages gradients (`grad_average` in every template), so the prompt
    /// describes the g the agent is shown.
    pub fn set_grad_average(&mut self, g: crate::profile::grad_average::GradAverage) {
        self.env.add_global("grad_average", g.name());
    }

    /// (template name, origin) for every template, origin being a path or "built-in ...".
    pub fn origins(&self) -> &[(&'static str, String)] {
        &self.origins
    }

    pub fn system(&self, ctx: &AgentContext) -> Result<String> {
        self.render(SYSTEM, val(StepView::new(ctx)))
    }

    pub fn step(&self, ctx: &AgentContext) -> Result<String> {
        self.render(STEP, val(StepView::new(ctx)))
    }

    /// `ctx` is the context the proposal was made in (before the step); `outcome.changes`
    /// are what was applied, and `outcome.edited` says whether the human edited it.
    pub fn reflection(
        &self,
        ctx: &AgentContext,
        proposal: &Proposal,
        outcome: &StepOutcome,
    ) -> Result<String> {
        self.render(REFLECTION, val(reflection_view(ctx, proposal, outcome)))
    }

    /// The follow-up message asking the model to fix an invalid proposal.
    pub fn repair(&self, ctx: &AgentContext, problems: &[String]) -> Result<String> {
        self.render(REPAIR, val(repair_view(ctx, problems)))
    }

    /// Fails naming the first name or attribute path `name` reads that `ctx` lacks.
    fn names_defined(&self, name: &str, ctx: &Value) -> Result<()> {
        let (t, origin) = self.template(name)?;
        // A misspelled name in a test (`{% if ceilng is not none %}`) renders without an
        // error even in strict mode, so the names and attribute paths the template reads
        // outside its loops are also looked up in what was passed (after the renders, whose
        // errors give the line).
        let known = |path: &str| {
            let mut parts = path.split('.');
            let first = parts.next().unwrap_or_default();
            if self.env.globals().any(|(g, _)| g == first) {
                return true;
            }
            let mut v = ctx.get_attr(first).unwrap_or(Value::UNDEFINED);
            for p in parts {
                // A none field's attributes cannot be looked up; the test before it guards.
                if v.is_none() {
                    return true;
                }
                v = v.get_attr(p).unwrap_or(Value::UNDEFINED);
            }
            !v.is_undefined()
        };
        // `x is defined` is how a template asks on purpose (one written for several
        // versions of these variables), so a name asked about that way is let through.
        let asked = |v: &str| {
            ["is defined", "is undefined", "is not defined"]
                .iter()
                .any(|test| t.source().contains(&format!("{v} {test}")))
        };
        let mut unknown: Vec<String> = t
            .undeclared_variables(true)
            .into_iter()
            .filter(|v| !known(v) && !asked(v))
            .collect();
        unknown.sort();
        if let Some(v) = unknown.first() {
            bail!("prompt template {origin}: undefined value: `{v}` is undefined (in {name})");
        }
        Ok(())
    }

    /// The template and where it came from, for error messages.
    fn template<'a>(&'a self, name: &'a str) -> Result<(minijinja::Template<'a, 'a>, &'a str)> {
        let origin = self.origins.iter().find(|(n, _)| *n == name);
        let origin = origin.map_or(name, |(_, o)| o.as_str());
        let t = self
            .env
            .get_template(name)
            .map_err(|e| anyhow::anyhow!("prompt template {origin}: {}", describe(&e)))?;
        Ok((t, origin))
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String> {
        let (t, origin) = self.template(name)?;
        let text = t
            .render(ctx)
            .map_err(|e| anyhow::anyhow!("prompt template {origin}: {}", describe(&e)))?;
        // A template that is all comments or untaken branches sends a blank prompt: refused
        // when the templates load (the example contexts) and before any request.
        if text.trim().is_empty() {
            return Err(Blank(format!(
                "prompt template {origin}: renders blank text; nothing would be asked"
            ))
            .into());
        }
        Ok(text)
    }
}

/// A template rendered to whitespace only.
#[derive(Debug)]
struct Blank(String);

impl std::fmt::Display for Blank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Blank {}

fn reflection_view(
    ctx: &AgentContext,
    proposal: &Proposal,
    outcome: &StepOutcome,
) -> ReflectionView {
    let proposed: Vec<LayerChange> = proposal
        .layers
        .iter()
        .map(|t| LayerChange {
            name: t.name.clone(),
            from: ctx.layer(&t.name).map_or(f64::NAN, |l| l.sparsity),
            to: t.sparsity,
        })
        .collect();
    ReflectionView {
        step: StepView::new(ctx),
        proposal_reasoning: proposal.reasoning.clone(),
        proposal_changes: proposed,
        edited: outcome.edited,
        outcome: OutcomeView::new(outcome),
    }
}

fn repair_view(ctx: &AgentContext, problems: &[String]) -> RepairView {
    RepairView {
        step: StepView::new(ctx),
        problems: problems.to_vec(),
    }
}

fn val<T: Serialize>(x: T) -> Value {
    Value::from(minijinja::value::Serde(x))
}

/// A template error in one line; an undefined value is named by the expression that used
/// it: "undefined value: `itertion` is undefined (in step.j2:3)".
fn describe(e: &minijinja::Error) -> String {
    let what = match e.kind() {
        ErrorKind::UndefinedError => {
            let expr = e
                .template_source()
                .zip(e.range())
                .and_then(|(src, r)| src.get(r))
                .map(|x| x.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|x| !x.is_empty());
            match expr {
                Some(x) => format!("{}: `{x}` is undefined", e.kind()),
                None => e.kind().to_string(),
            }
        }
        _ => match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        },
    };
    // minijinja says where the input ended; the tag left open is the author's mistake.
    let open = (e.kind() == ErrorKind::SyntaxError)
        .then(|| e.template_source())
        .flatten()
        .filter(|_| {
            e.detail()
                .is_some_and(|d| d.contains("unexpected end of input"))
        })
        .and_then(super::unclosed::unclosed)
        .map_or(String::new(), |o| format!("; {o}"));
    let at = match e.name() {
        Some(n) => format!(" (in {n}:{}{open})", e.line().unwrap_or(0)),
        None => String::new(),
    };
    format!("{what}{at}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Serialize)]
struct RowView {
    #[serde(flatten)]
    row: LayerRow,
    /// Combined sensitivity z_s + z_g; lower means safer to prune.
    z: f64,
    /// The highest sparsity the layer may be given this step.
    max: f64,
}

#[derive(Serialize)]
struct OutcomeView {
    #[serde(flatten)]
    outcome: StepOutcome,
    /// Relative perplexity change of the step (ppl_after / ppl_before - 1).
    change: f64,
}

impl OutcomeView {
    fn new(o: &StepOutcome) -> OutcomeView {
        // In model order, as the profile table (the outcome keeps the names' text order).
        let mut outcome = o.clone();
        outcome
            .changes
            .sort_by(|a, b| model_order(&a.name).cmp(&model_order(&b.name)));
        OutcomeView {
            outcome,
            change: o.delta(),
        }
    }
}

/// One of the agent's earlier reflections with the step it was about.
#[derive(Serialize)]
struct ReflectionItem {
    /// 0 when the context does not say.
    iteration: usize,
    /// "accepted" (or that a reviewer's rollback undid it) or "rolled back"; empty when the
    /// step is not in the history.
    verdict: &'static str,
    text: String,
}

fn reflection_items(ctx: &AgentContext) -> Vec<ReflectionItem> {
    let step = |i: usize| ctx.reflection_steps.get(i).copied().unwrap_or(0);
    (ctx.reflections.iter().enumerate())
        .map(|(i, text)| {
            let h = ctx.history.iter().find(|h| h.iteration == step(i));
            ReflectionItem {
                iteration: step(i),
                verdict: h.map_or("", |h| match (h.accepted, h.undone_to) {
                    (true, None) => "accepted",
                    (true, Some(_)) => "accepted, later undone by the reviewer's rollback",
                    (false, _) => "rolled back",
                }),
                text: text.clone(),
            }
        })
        .collect()
}

/// Everything the system and step templates can use.
#[derive(Serialize)]
struct StepView {
    #[serde(flatten)]
    ctx: AgentContext,
    rows: Vec<RowView>,
    history: Vec<OutcomeView>,
    remaining: f64,
    /// Iterations the session may still take, this one included.
    iterations_left: usize,
    /// Parameters of all the rows (the weights of the global sparsity).
    total_params: u64,
    degradation: f64,
    rollbacks: usize,
    /// Accepted steps a reviewer's rollback undid.
    undone: usize,
    /// `reflections` with the iteration and verdict of the step each is about.
    earlier_reflections: Vec<ReflectionItem>,
    example_name: String,
    example_sparsity: String,
}

impl StepView {
    fn new(ctx: &AgentContext) -> StepView {
        let mut rows: Vec<RowView> = ctx
            .layers
            .iter()
            .map(|r| RowView {
                row: r.clone(),
                z: r.z_s + r.z_g,
                max: max_target(r.sparsity, &ctx.bounds),
            })
            .collect();
        rows.sort_by(|a, b| {
            let key = |r: &RowView| (r.row.block, kind_order(&r.row.kind));
            key(a)
                .cmp(&key(b))
                .then_with(|| a.row.name.cmp(&b.row.name))
        });
        let (example_name, example_sparsity) = match rows.first() {
            Some(r) => {
                let b = &ctx.bounds;
                let to = (r.row.sparsity + b.max_step / 2.0).min(b.max_layer_sparsity);
                (r.row.name.clone(), frac((to * 100.0).round() / 100.0))
            }
            None => ("model.layers.0.mlp.up_proj".into(), "0.1".into()),
        };
        let earlier_reflections = reflection_items(ctx);
        let mut ctx = ctx.clone();
        // History goes through OutcomeView; keep one copy of it in the view.
        let history = std::mem::take(&mut ctx.history);
        StepView {
            remaining: (ctx.target - ctx.global_sparsity).max(0.0),
            iterations_left: (ctx.max_iters + 1).saturating_sub(ctx.iteration),
            total_params: ctx.layers.iter().map(|l| l.params).sum(),
            degradation: super::context::relative_change(ctx.current_ppl, ctx.dense_ppl),
            rollbacks: history.iter().filter(|h| !h.accepted).count(),
            undone: history.iter().filter(|h| h.undone_to.is_some()).count(),
            earlier_reflections,
            history: history.iter().map(OutcomeView::new).collect(),
            rows,
            ctx,
            example_name,
            example_sparsity,
        }
    }
}

#[derive(Serialize)]
struct ReflectionView {
    #[serde(flatten)]
    step: StepView,
    proposal_reasoning: String,
    proposal_changes: Vec<LayerChange>,
    /// The human reviewer edited or overrode the proposal (outcome.edited).
    edited: bool,
    outcome: OutcomeView,
}

#[derive(Serialize)]
struct RepairView {
    #[serde(flatten)]
    step: StepView,
    problems: Vec<String>,
}

#[cfg(test)]
#[path = "prompt_tests.rs"]
mod tests;

/// A prompts directory whose templates would be read: a template misnamed (`Step.j2`,
/// `step.jinja`) was passed over without a word, and the built-in used in its place.
fn check_dir(d: &Path) -> Result<()> {
    if !d.is_dir() {
        match d.exists() {
            true => bail!("prompts dir {}: not a directory", d.display()),
            false => bail!("prompts dir {}: does not exist", d.display()),
        }
    }
    let names = BUILTIN.map(|(n, _)| n).join(", ");
    let entries = std::fs::read_dir(d)
        .with_context(|| format!("prompts dir {}: cannot list it", d.display()))?;
    let mut found = false;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if BUILTIN.iter().any(|(n, _)| *n == name) {
            // Anything but a file (followed through links) was passed over for the built-in.
            let what = match std::fs::metadata(e.path()) {
                Ok(m) if m.is_file() => None,
                Ok(m) if m.is_dir() => Some("is a directory, not a template file".to_string()),
                Ok(_) => Some("is not a regular file".to_string()),
                Err(err) => Some(format!("cannot be read ({err})")),
            };
            if let Some(what) = what {
                bail!("--prompts {}: {name} {what}", d.display());
            }
            found = true;
        } else if [".j2", ".jinja", ".jinja2"]
            .iter()
            // `STEP.J2` was passed over without a word, and the built-in used.
            .any(|x| name.to_ascii_lowercase().ends_with(x))
        {
            bail!(
                "prompt template {}: not a name --prompts reads ({names}); rename it or move it out",
                e.path().display()
            );
        }
    }
    if !found {
        bail!("prompts dir {}: holds none of {names}", d.display());
    }
    Ok(())
}

/// FNV-1a hash of every template's text (built-in, or the override in `dir`), recorded in
/// the session header so a replay can tell which prompts produced the replies.
pub fn source_hashes(dir: Option<&Path>) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for (name, builtin) in BUILTIN {
        let text = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
            Some(p) => std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read prompt template {}", p.display()))?,
            None => builtin.to_string(),
        };
        let mut h = crate::runtime::Fnv1a::new();
        h.eat(text.as_bytes());
        out.insert(name.to_string(), format!("fnv1a64:{:016x}", h.value()));
    }
    Ok(out)
}
