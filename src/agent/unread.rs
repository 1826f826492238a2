//! A prompt the server may not have read whole. Ollama, beyond its `num_ctx`, drops the
//! start of a prompt without an error and counts only what it kept; the session then runs
//! on proposals made without the profile table. The server's token count gives it away:
//! our prompts (tables of layer names and numbers) run 2–5 characters a token.

/// More characters a token than any tokenizer gives our prompts: twice a plain English
/// text's four, and about twice the layer tables' three.
const MOST_CHARS_PER_TOKEN: f64 = 6.0;

/// Shorter prompts fit every context a server offers (2048 tokens and more, at 2
/// characters a token).
const LEAST_CHARS: usize = 4_096;

/// Why `prompt`, counted by the server as `tokens`, looks cut; None when it looks read
/// whole or the server gave no count.
pub fn unread_prompt(prompt: &str, tokens: u64) -> Option<String> {
    let chars = prompt.chars().count();
    if tokens == 0 || chars < LEAST_CHARS || chars as f64 <= MOST_CHARS_PER_TOKEN * tokens as f64 {
        return None;
    }
    Some(format!(
        "the server counted {tokens} prompt tokens for {chars} characters of prompt ({:.1} \
         characters a token, where 2–5 is usual): it may have cut the prompt to fit its \
         context, as Ollama does silently beyond num_ctx; give the server a longer context, \
         or shorten the prompt with --prompts DIR",
        chars as f64 / tokens as f64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_far_below_the_characters_is_named() {
        let prompt = "| model.layers.0.mlp.up_proj | 0.100000 |\n".repeat(700);
        assert_eq!(prompt.len(), 29_400);
        let w = unread_prompt(&prompt, 2048).unwrap();
        assert!(w.starts_with("the server counted 2048 prompt tokens for 29400 characters of prompt (14.4 characters a token"), "{w}");
        assert!(w.contains("num_ctx") && w.contains("--prompts"), "{w}");
        // A count a tokenizer could give, no count, and a short prompt pass.
        assert_eq!(unread_prompt(&prompt, 9_000), None);
        assert_eq!(unread_prompt(&prompt, 4_900), None);
        assert!(unread_prompt(&prompt, 4_899).is_some());
        assert_eq!(unread_prompt(&prompt, 0), None);
        assert_eq!(unread_prompt(&prompt[..4_095], 10), None);
        assert!(unread_prompt(&prompt[..4_096], 10).is_some());
        // Characters, not bytes: 3000 two-byte characters are a short prompt.
        assert_eq!(unread_prompt(&"é".repeat(3_000), 100), None);
        assert!(unread_prompt(&"é".repeat(5_000), 500).is_some());
    }
}
