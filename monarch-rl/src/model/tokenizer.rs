//! Text to token ids and back: the interface every policy model's tokenizer
//! offers, and a streaming decoder built on it.

use super::ModelError;

/// A tokenizer of a policy model.
///
/// `decode(encode(text)) == text` for the text a Zorplex episode holds.
pub trait TextTokenizer: Send + Sync {
    /// The ids of `text`.
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError>;

    /// The text of `ids`.
    fn decode(&self, ids: &[u32]) -> Result<String, ModelError>;

    /// Ids in the vocabulary.
    fn vocab_size(&self) -> usize;

    /// The token that ends a turn, if the model has one.
    fn end_of_turn(&self) -> Option<u32>;

    /// A token to pad batches with (masked out wherever it appears).
    fn pad(&self) -> u32;
}

/// Turns a stream of token ids into text as they are generated, without
/// decoding the whole sequence at every step.
///
/// Byte-level tokens can end inside a UTF-8 character; text is released only
/// once it decodes cleanly, so the pieces joined equal the decoded whole.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    /// Start of the ids decoded again for context (a byte-level merge can
    /// change how a token reads after its left neighbour).
    prefix: usize,
    /// Ids up to here have been released as text.
    read: usize,
}

impl StreamDecoder {
    /// A decoder with nothing decoded yet.
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// Adds `id`; returns the text it completes, if any.
    pub fn step(
        &mut self,
        tokenizer: &dyn TextTokenizer,
        id: u32,
    ) -> Result<Option<String>, ModelError> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let now = tokenizer.decode(&self.ids[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{fffd}') && now.starts_with(&before) {
            let text = now[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(Some(text))
        } else {
            Ok(None)
        }
    }
}
