//! Byte-level BPE trained on the world corpus with the tokenizers crate.

use anyhow::{anyhow, Result};
use std::collections::HashSet;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    Tokenizer, TokenizerBuilder,
};

pub const EOS: &str = "<|endoftext|>";

/// `ByteLevel::new(false, true, true)`: no prefix space, so decode(encode(s)) == s exactly.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<Tokenizer> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect::<HashSet<char>>())
        .build();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tok = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(byte_level.into()))
    .with_decoder(Some(byte_level.into()))
    .build()
    .map_err(|e| anyhow!("building the tokenizer: {e}"))?;
    tok.train(&mut trainer, texts.iter())
        .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
    Ok(tok.into())
}

pub fn eos_id(tok: &Tokenizer) -> Result<u32> {
    tok.token_to_id(EOS)
        .ok_or_else(|| anyhow!("tokenizer has no {EOS} token"))
}

/// Token ids without special tokens, segment by segment.
pub fn encode_segments(tok: &Tokenizer, segments: &[String]) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for s in segments {
        let enc = tok
            .encode(s.as_str(), false)
            .map_err(|e| anyhow!("tokenizing training text: {e}"))?;
        ids.extend_from_slice(enc.get_ids());
    }
    Ok(ids)
}
