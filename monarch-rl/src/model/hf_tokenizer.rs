//! Hugging Face tokenizers (byte-level BPE) for pretrained models: read from
//! a `tokenizer.json`, or built from the vocabulary in a GGUF file.

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use super::tokenizer::TextTokenizer;
use super::ModelError;

/// A pretrained model's tokenizer.
#[derive(Clone)]
pub struct HfTokenizer {
    inner: Tokenizer,
    end_of_turn: Option<u32>,
    pad: u32,
}

impl HfTokenizer {
    /// The tokenizer of a `tokenizer.json`, ending turns at `end_of_turn`
    /// (a token such as `<|im_end|>`) when the vocabulary has it.
    pub fn from_json_file(path: &std::path::Path, end_of_turn: &str) -> Result<Self, ModelError> {
        let inner = Tokenizer::from_file(path).map_err(|e| ModelError::Load {
            path: path.display().to_string(),
            reason: format!("not a tokenizer.json: {e}"),
        })?;
        Ok(HfTokenizer::wrap(inner, end_of_turn))
    }

    /// A byte-level BPE tokenizer from its vocabulary (id order), merges
    /// (`"a b"`) and special tokens, splitting every digit on its own
    /// before the GPT-2 split, as SmolLM's tokenizer does.
    pub fn byte_level_bpe(
        tokens: &[String],
        merges: &[String],
        specials: &[String],
        end_of_turn: &str,
    ) -> Result<Self, ModelError> {
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Tokenizer(format!("merge {m:?} is not two tokens")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner.with_decoder(Some(ByteLevel::default()));
        let specials: Vec<AddedToken> = specials
            .iter()
            .map(|s| AddedToken::from(s.clone(), true))
            .collect();
        inner
            .add_special_tokens(specials)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(HfTokenizer::wrap(inner, end_of_turn))
    }

    /// A byte-level tokenizer without merges: one token per byte (in the
    /// GPT-2 byte alphabet), then `specials`; for small models made from
    /// scratch, and the tests of the pretrained loaders.
    pub fn byte_level_bpe_alphabet(specials: &[&str]) -> Self {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort();
        let mut tokens: Vec<String> = alphabet.iter().map(char::to_string).collect();
        tokens.extend(specials.iter().map(|s| s.to_string()));
        let specials: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
        HfTokenizer::byte_level_bpe(&tokens, &[], &specials, "<|im_end|>")
            .expect("a vocabulary without merges is valid")
    }

    /// Writes the tokenizer as a `tokenizer.json`.
    pub fn save(&self, path: &std::path::Path) -> Result<(), ModelError> {
        self.inner.save(path, false).map_err(|e| ModelError::Load {
            path: path.display().to_string(),
            reason: format!("cannot write the tokenizer: {e}"),
        })
    }

    fn wrap(inner: Tokenizer, end_of_turn: &str) -> Self {
        let end_of_turn = inner.token_to_id(end_of_turn);
        let pad = end_of_turn.unwrap_or(0);
        HfTokenizer {
            inner,
            end_of_turn,
            pad,
        }
    }

    /// The text of one token as the vocabulary spells it.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

impl TextTokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?
            .get_ids()
            .to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn end_of_turn(&self) -> Option<u32> {
        self.end_of_turn
    }

    fn pad(&self) -> u32 {
        self.pad
    }
}
