//! Fractions written as percentages with enough decimals to be read right: a value beside
//! the limit it was judged against never reads equal to it when it is not, and a change
//! that is not zero never reads "0.0%" or "-0.0%". For the guard's verdicts and the prompts.

/// `value` in percent (no `%` sign): one decimal, or as many more (up to 4) as
/// it takes to show a non-zero value as non-zero, to show `beside` (a limit, a target)
/// exactly when it has at most 4 decimals, and to tell the two apart. Called with the
/// arguments swapped it picks the same decimals, so a value and its limit print alike.
pub fn percent(value: f64, beside: Option<f64>, signed: bool) -> String {
    let n = (1..=4)
        .find(|&n| {
            let both = [Some(value), beside];
            let each = both.iter().flatten().all(|&x| readable(x * 100.0, n));
            let apart = match beside {
                Some(b) => value == b || fixed(value * 100.0, n) != fixed(b * 100.0, n),
                None => true,
            };
            each && apart
        })
        .unwrap_or(4);
    match signed {
        true => format!("{:+.n$}", value * 100.0),
        false => format!("{:.n$}", value * 100.0),
    }
}

fn fixed(x: f64, n: usize) -> String {
    format!("{x:.n$}")
}

/// At `n` decimals `x` is not shown as zero unless it is, and is exact if it can be at 4.
fn readable(x: f64, n: usize) -> bool {
    let zero = |s: &str| s.trim_start_matches('-').chars().all(|c| "0.".contains(c));
    let exact_at = |k: usize| {
        fixed(x, k)
            .parse::<f64>()
            .is_ok_and(|r| (r - x).abs() < 1e-9)
    };
    let hides_value = x != 0.0 && zero(&fixed(x, n));
    let loses_digits = !exact_at(n) && exact_at(4);
    !hides_value && !loses_digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_show_the_digits_that_tell_value_and_limit_apart() {
        let p = |v, l| {
            format!(
                "{}% {}%",
                percent(v, Some(l), true),
                percent(l, Some(v), false)
            )
        };
        // The usual case keeps one decimal.
        assert_eq!(p(0.012, 0.05), "+1.2% 5.0%");
        assert_eq!(p(0.074, 0.05), "+7.4% 5.0%");
        // Equal at one decimal, apart at two: 0.21% over 0.2% read "+0.2% > 0.2%".
        assert_eq!(p(0.0021, 0.002), "+0.21% 0.20%");
        // The threshold itself exactly: 0.05% read 0.1% (and the 0.066% beside it, 0.07%).
        assert_eq!(p(0.00066, 0.0005), "+0.066% 0.050%");
        // A tiny fall is not "-0.0%", nor a tiny rise "+0.0%" (an accepted +0.01% did).
        assert_eq!(p(-0.000004, 0.002), "-0.0004% 0.2000%");
        assert_eq!(p(0.0001234, 0.05), "+0.01% 5.00%");
        assert_eq!(p(0.0, 0.05), "+0.0% 5.0%");
        assert_eq!(p(0.05, 0.05), "+5.0% 5.0%");
        assert_eq!(percent(0.02, Some(0.05), false), "2.0");
    }

    #[test]
    fn prompt_percentages_tell_a_value_from_its_limit_and_show_small_changes() {
        let s = |v, b| percent(v, b, true);
        let u = |v, b| percent(v, b, false);
        // One decimal when that reads right.
        assert_eq!(s(0.012, Some(0.05)), "+1.2");
        assert_eq!(u(0.05, Some(0.012)), "5.0");
        assert_eq!(u(0.45, None), "45.0");
        // A rolled-back +1.04% beside a 1% threshold read "+1.0%; threshold 1.0%".
        assert_eq!(s(0.0104, Some(0.01)), "+1.04");
        assert_eq!(u(0.01, Some(0.0104)), "1.00");
        // Sparsity just short of its target read as the target.
        assert_eq!(u(0.4499, Some(0.45)), "44.99");
        assert_eq!(u(0.45, Some(0.4499)), "45.00");
        assert_eq!(u(0.0001, None), "0.01");
        // A tiny change is neither "-0.0%" nor "+0.0%".
        assert_eq!(s(-0.000004, None), "-0.0004");
        assert_eq!(s(0.00002, None), "+0.002");
        assert_eq!(s(0.0, None), "+0.0");
        // A limit with more decimals is shown exactly: 0.05% read 0.1%.
        assert_eq!(u(0.0005, None), "0.05");
        // Equal values stay equal.
        assert_eq!(u(0.45, Some(0.45)), "45.0");
    }
}
