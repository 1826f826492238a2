//! How many gradient windows the profile takes and how it averages them: free of candle,
//! so a session's options can name it.

use serde::{Deserialize, Serialize};

/// Calibration windows the gradient pass takes unless told otherwise (`profile`, sessions).
pub const DEFAULT_GRAD_WINDOWS: usize = 4;

/// How the gradient windows' dL/dW are averaged into G.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradAverage {
    /// G = mean over the windows of |dL/dW| (the paper's G_l).
    #[default]
    MeanOfAbs,
    /// G = |mean over the windows of dL/dW|: Arborist's profile until 2026-11-30, kept so
    /// sessions recorded with it still verify.
    AbsOfMean,
}

impl GradAverage {
    pub fn name(self) -> &'static str {
        match self {
            GradAverage::MeanOfAbs => "mean-of-abs",
            GradAverage::AbsOfMean => "abs-of-mean",
        }
    }
}

impl std::fmt::Display for GradAverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GradAverage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mean-of-abs" => Ok(GradAverage::MeanOfAbs),
            "abs-of-mean" => Ok(GradAverage::AbsOfMean),
            _ => Err(format!(
                "unknown gradient average `{s}` (mean-of-abs or abs-of-mean)"
            )),
        }
    }
}
