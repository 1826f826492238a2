//! Themes: semantic colour names (accent, danger, muted, ...) that widgets ask for, never
//! raw colours. Built-ins are embedded; files in the user's themes directory override them
//! by name or add new ones. NO_COLOR turns every colour off and keeps emphasis as modifiers.

use anyhow::{anyhow, Result};
use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use std::path::PathBuf;

use super::colormap;

const BUILTIN: [&str; 3] = [
    include_str!("../../themes/dark.yaml"),
    include_str!("../../themes/light.yaml"),
    include_str!("../../themes/ansi16.yaml"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeatMode {
    #[default]
    Viridis,
    Ansi16,
    Mono,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Colors {
    fg: Option<String>,
    bg: Option<String>,
    muted: Option<String>,
    accent: Option<String>,
    selected: Option<String>,
    good: Option<String>,
    warn: Option<String>,
    danger: Option<String>,
    border: Option<String>,
    border_focus: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    #[serde(default)]
    heat: HeatMode,
    #[serde(default)]
    colors: Colors,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub heat: HeatMode,
    /// NO_COLOR: no colour at all; emphasis by bold, reverse and glyphs.
    pub mono: bool,
    fg: Color,
    bg: Color,
    muted: Color,
    accent: Color,
    /// None: the selected row is drawn reversed (`selected: reverse`).
    selected: Option<Color>,
    good: Color,
    warn: Color,
    danger: Color,
    border: Color,
    border_focus: Color,
}

fn color(v: &Option<String>, fallback: Color, key: &str) -> Result<Color> {
    match v {
        None => Ok(fallback),
        Some(s) => s.parse::<Color>().map_err(|_| {
            let reverse = if key == "selected" { ", reverse" } else { "" };
            anyhow!("colour `{key}: {s}` is not a name, #rrggbb, 0-255{reverse} or reset")
        }),
    }
}

impl Theme {
    /// Parse a theme file; missing colours come from `base`.
    pub fn from_yaml(text: &str, base: Option<&Theme>) -> Result<Theme> {
        let f: ThemeFile = serde_yaml::from_str(text)?;
        let c = &f.colors;
        let b = |pick: fn(&Theme) -> Color| base.map_or(Color::Reset, pick);
        Ok(Theme {
            name: f.name,
            heat: f.heat,
            mono: false,
            fg: color(&c.fg, b(|t| t.fg), "fg")?,
            bg: color(&c.bg, b(|t| t.bg), "bg")?,
            muted: color(&c.muted, b(|t| t.muted), "muted")?,
            accent: color(&c.accent, b(|t| t.accent), "accent")?,
            selected: match c.selected.as_deref() {
                Some("reverse") => None,
                None => base.map_or(Some(Color::Reset), |t| t.selected),
                Some(_) => Some(color(&c.selected, Color::Reset, "selected")?),
            },
            good: color(&c.good, b(|t| t.good), "good")?,
            warn: color(&c.warn, b(|t| t.warn), "warn")?,
            danger: color(&c.danger, b(|t| t.danger), "danger")?,
            border: color(&c.border, b(|t| t.border), "border")?,
            border_focus: color(&c.border_focus, b(|t| t.border_focus), "border_focus")?,
        })
    }

    fn fg_or(&self, c: Color, m: Modifier) -> Style {
        if self.mono {
            Style::default().add_modifier(m)
        } else {
            Style::default().fg(c)
        }
    }

    /// Plain text on the theme's background.
    pub fn base(&self) -> Style {
        if self.mono {
            Style::default()
        } else {
            Style::default().fg(self.fg).bg(self.bg)
        }
    }
    pub fn text(&self) -> Style {
        self.fg_or(self.fg, Modifier::empty())
    }
    /// A text field's cursor: the text's colours swapped over the grapheme it is on (an
    /// inserted `▏` took a column, and words moved between lines as the cursor moved).
    pub fn cursor(&self) -> Style {
        self.text().add_modifier(Modifier::REVERSED)
    }
    pub fn muted(&self) -> Style {
        self.fg_or(self.muted, Modifier::DIM)
    }
    pub fn accent(&self) -> Style {
        self.fg_or(self.accent, Modifier::BOLD)
    }
    pub fn good(&self) -> Style {
        self.fg_or(self.good, Modifier::empty())
    }
    pub fn warn(&self) -> Style {
        self.fg_or(self.warn, Modifier::BOLD)
    }
    pub fn danger(&self) -> Style {
        self.fg_or(self.danger, Modifier::BOLD | Modifier::UNDERLINED)
    }
    pub fn title(&self) -> Style {
        self.accent().add_modifier(Modifier::BOLD)
    }
    pub fn border(&self, focused: bool) -> Style {
        match (self.mono, focused) {
            (true, true) => Style::default().add_modifier(Modifier::BOLD),
            (true, false) => Style::default(),
            (false, true) => Style::default().fg(self.border_focus),
            (false, false) => Style::default().fg(self.border),
        }
    }
    /// The selected row or button: on the theme's colour, or reversed, which keeps every
    /// colour of the row readable on a palette the theme does not know (ansi16's light blue
    /// values on its blue row were hard to read).
    pub fn selected(&self) -> Style {
        match (self.mono, self.selected) {
            (true, _) => Style::default().add_modifier(Modifier::REVERSED),
            (false, None) => Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD),
            (false, Some(c)) => Style::default().bg(c).add_modifier(Modifier::BOLD),
        }
    }

    /// A heatmap cell at position `t` in [0, 1]: its style and fill glyph.
    pub fn heat(&self, t: f64) -> (Style, char) {
        match (self.mono, self.heat) {
            (true, _) | (false, HeatMode::Mono) => (Style::default(), colormap::shade(t)),
            (false, HeatMode::Ansi16) => {
                let bg = colormap::ansi16(t);
                (Style::default().bg(bg).fg(colormap::contrast(bg)), ' ')
            }
            (false, HeatMode::Viridis) => {
                let (r, g, b) = colormap::viridis(t);
                let bg = Color::Rgb(r, g, b);
                (Style::default().bg(bg).fg(colormap::contrast(bg)), ' ')
            }
        }
    }
}

/// The available themes and the one in use.
#[derive(Debug, Clone)]
pub struct Themes {
    pub list: Vec<Theme>,
    pub current: usize,
}

impl Themes {
    /// Built-ins only (tests).
    pub fn builtin(no_color: bool) -> Themes {
        let mut list: Vec<Theme> = Vec::new();
        for text in BUILTIN {
            let t = Theme::from_yaml(text, list.first()).expect("built-in themes parse");
            list.push(t);
        }
        for t in &mut list {
            t.mono = no_color;
        }
        Themes { list, current: 0 }
    }

    /// Built-ins, then the user's directory; start with $ARBORIST_THEME if it names one.
    /// Broken user files are returned as warnings and skipped.
    pub fn load() -> (Themes, Vec<String>) {
        let chosen = std::env::var("ARBORIST_THEME").ok();
        Themes::load_from(user_dir(), chosen.as_deref(), no_color_env())
    }

    /// `load` from the directory `dir`, starting with the theme named `chosen`.
    pub fn load_from(
        dir: Option<PathBuf>,
        chosen: Option<&str>,
        no_color: bool,
    ) -> (Themes, Vec<String>) {
        let mut themes = Themes::builtin(no_color);
        let mut warnings = Vec::new();
        if let Some(dir) = dir {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            files.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
            files.sort();
            for p in files {
                let parsed = std::fs::read_to_string(&p)
                    .map_err(anyhow::Error::from)
                    .and_then(|text| Theme::from_yaml(&text, themes.list.first()));
                match parsed {
                    // It would show as `theme ` and could not be chosen by name.
                    Ok(t) if t.name.trim().is_empty() => {
                        warnings.push(format!("theme {}: `name` is empty", p.display()))
                    }
                    Ok(mut t) => {
                        t.mono = no_color;
                        match themes.list.iter_mut().find(|o| o.name == t.name) {
                            Some(slot) => *slot = t,
                            None => themes.list.push(t),
                        }
                    }
                    Err(e) => warnings.push(format!("theme {}: {e:#}", p.display())),
                }
            }
        }
        if let Some(name) = chosen {
            match themes.list.iter().position(|t| t.name == name) {
                Some(i) => themes.current = i,
                // First: the status line shows the first warning, and this one the user
                // asked for by name.
                None => warnings.insert(0, format!("ARBORIST_THEME={name}: no such theme")),
            }
        }
        // A value with a line break (`fg: "#12\n34"`) made a warning of two lines, and the
        // status line shows warnings whole on one.
        let warnings = (warnings.iter())
            .map(|w| crate::agent::text::one_line(w, usize::MAX))
            .collect();
        (themes, warnings)
    }

    pub fn theme(&self) -> &Theme {
        &self.list[self.current]
    }

    pub fn next(&mut self) {
        self.current = (self.current + 1) % self.list.len();
    }
}

/// NO_COLOR set to anything non-empty (https://no-color.org).
pub fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// $ARBORIST_THEMES, or the `themes` folder of the config directory.
fn user_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ARBORIST_THEMES") {
        return Some(PathBuf::from(p));
    }
    super::keymap::config_dir().map(|d| d.join("themes"))
}
