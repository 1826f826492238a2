//! Colour maps for the heatmap: viridis (perceptually uniform, readable by colour-blind
//! viewers and in greyscale), a five-colour approximation for 16-colour terminals, and
//! shade glyphs for NO_COLOR.

use ratatui::style::Color;

/// Viridis sampled at nine evenly spaced points (matplotlib's table); linear in between.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// Viridis at `t` in [0, 1] (clamped; NaN is the low end).
pub fn viridis(t: f64) -> (u8, u8, u8) {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The same ramp in five named colours (purple, blue, teal, green, yellow).
pub fn ansi16(t: f64) -> Color {
    const BINS: [Color; 5] = [
        Color::Magenta,
        Color::Blue,
        Color::Cyan,
        Color::Green,
        Color::Yellow,
    ];
    BINS[bin(t, BINS.len())]
}

/// Density glyphs from low to high, for terminals without colour.
pub fn shade(t: f64) -> char {
    const SHADES: [char; 5] = ['·', '░', '▒', '▓', '█'];
    SHADES[bin(t, SHADES.len())]
}

fn bin(t: f64, n: usize) -> usize {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    ((t * n as f64) as usize).min(n - 1)
}

/// Black or white, whichever reads better on `bg`.
pub fn contrast(bg: Color) -> Color {
    let (r, g, b) = match bg {
        Color::Rgb(r, g, b) => (r, g, b),
        Color::Yellow | Color::Green | Color::Cyan | Color::White | Color::LightYellow => {
            return Color::Black
        }
        _ => return Color::White,
    };
    let luma = 0.2126 * r as f64 + 0.7152 * g as f64 + 0.0722 * b as f64;
    if luma > 110.0 {
        Color::Black
    } else {
        Color::White
    }
}

/// Position of `v` between `lo` and `hi` (0.5 when the range is empty).
pub fn normalise(v: f64, lo: f64, hi: f64) -> f64 {
    if hi - lo <= f64::EPSILON {
        0.5
    } else {
        ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
    }
}
