//! Which block tag a template leaves open. minijinja reports a missing `{% endif %}` as
//! "unexpected end of input" at the template's last line; the opening tag is what the
//! author needs to find.

/// A block tag left open.
#[derive(Debug, PartialEq)]
pub struct Open {
    pub kind: String,
    /// Where the innermost one left open by the nesting starts: each end tag closes the
    /// nearest open block, so a missing end inside another block leaves the outer one open.
    pub line: usize,
    /// How many of the kind open, and how many end tags close one.
    pub opened: usize,
    pub closed: usize,
}

impl std::fmt::Display for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = &self.kind;
        write!(
            f,
            "{} `{{% {k} %}}` but {} `{{% end{k} %}}`; by the nesting, the one at line {} is left open",
            self.opened, self.closed, self.line
        )
    }
}

/// The innermost block tag `src` leaves open.
pub fn unclosed(src: &str) -> Option<Open> {
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut counts: std::collections::HashMap<String, (usize, usize)> = Default::default();
    let mut at = 0;
    while let Some(i) = next_tag(src, at) {
        let close = if src[i..].starts_with("{#") {
            "#}"
        } else {
            "%}"
        };
        let Some(len) = src[i + 2..].find(close) else {
            break;
        };
        let end = i + 2 + len + 2;
        at = end;
        if close == "#}" {
            continue;
        }
        let body =
            src[i + 2..end - 2].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        let word = body.split_whitespace().next().unwrap_or("");
        let line = src[..i].matches('\n').count() + 1;
        match word {
            // Nothing inside a raw block is a tag.
            "raw" => match src[end..].find("endraw") {
                Some(j) => at = end + j,
                None => {
                    open.push((word.into(), line));
                    counts.entry(word.into()).or_default().0 += 1;
                    break;
                }
            },
            // `{% set x = 1 %}` is a statement; `{% set x %}...{% endset %}` a block.
            "if" | "for" | "block" | "macro" | "call" | "filter" | "with" | "autoescape"
            | "set"
                if word != "set" || !body.contains('=') =>
            {
                open.push((word.into(), line));
                counts.entry(word.into()).or_default().0 += 1;
            }
            w => {
                if let Some(kind) = w.strip_prefix("end") {
                    counts.entry(kind.into()).or_default().1 += 1;
                    if open.last().is_some_and(|(k, _)| k == kind) {
                        open.pop();
                    }
                }
            }
        }
    }
    let (kind, line) = open.pop()?;
    let (opened, closed) = counts[&kind];
    Some(Open {
        kind,
        line,
        opened,
        closed,
    })
}

fn next_tag(src: &str, from: usize) -> Option<usize> {
    let rest = &src[from..];
    [rest.find("{%"), rest.find("{#")]
        .into_iter()
        .flatten()
        .min()
        .map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_open_block_and_its_line() {
        let open = |kind: &str, line, opened, closed| {
            Some(Open {
                kind: kind.into(),
                line,
                opened,
                closed,
            })
        };
        let t = "a\n{% for x in xs %}\n{% if x %}y{% endif %}\n{%- if z -%}\nq\n{% endfor %}\n";
        // The `for` is closed by name; the inner `if` it skipped over stays open.
        assert_eq!(unclosed(t), open("if", 4, 2, 1));
        // An end missing inside another block of its kind leaves the outer one open.
        let nested = "{% if a %}\n{% if b %}\nx\n{% endif %}\n";
        assert_eq!(unclosed(nested), open("if", 1, 2, 1));
        assert_eq!(
            unclosed(nested).unwrap().to_string(),
            "2 `{% if %}` but 1 `{% endif %}`; by the nesting, the one at line 1 is left open"
        );
        let ok = "{% set a = 1 %}{% set b %}x{% endset %}{# {% if %} #}{% raw %}{% if{% endraw %}";
        assert_eq!(unclosed(ok), None);
        assert_eq!(unclosed("{% macro m() %}\n\n"), open("macro", 1, 1, 0));
        assert_eq!(unclosed("{% set b %}x"), open("set", 1, 1, 0));
    }
}
