//! The tokenizer of the Zorplex language, for models trained from scratch:
//! every digit is its own token, so numbers are read and written digit by
//! digit, and the words of the task's prompts are one token each.

use std::collections::HashMap;

use super::tokenizer::TextTokenizer;
use super::ModelError;
use crate::zorplex::{SpecKind, TaskSpec, WORDS};

/// A word-and-character tokenizer built from the Zorplex prompts.
///
/// The vocabulary holds a padding token, an end-of-turn token, every
/// printable ASCII character and the newline (digits among them), and each
/// word of the system prompts, the questions, the tools' results and the
/// scripted policies' phrases, with and without a leading space. A run of
/// letters that is not a word is spelled out letter by letter, so every
/// ASCII text encodes and decodes back to itself. Each spec's whole system
/// prompt is one token too: it never varies, and reading it word by word
/// would triple the length of every sequence a small model trains on.
///
/// ```
/// use monarch_rl::model::{TextTokenizer, ZorplexTokenizer};
///
/// let tokenizer = ZorplexTokenizer::new();
/// let ids = tokenizer.encode("LOOKUP[cat]\n[Result: 42]").unwrap();
/// // LOOKUP, [, cat, ], newline, [, Result, :, space, 4, 2, ]
/// assert_eq!(ids.len(), 12);
/// assert_eq!(tokenizer.decode(&ids).unwrap(), "LOOKUP[cat]\n[Result: 42]");
/// ```
#[derive(Clone, Debug)]
pub struct ZorplexTokenizer {
    pieces: Vec<String>,
    ids: HashMap<String, u32>,
    /// The system prompts, longest first, and their tokens.
    prompts: Vec<(String, u32)>,
}

/// The padding token's id.
const PAD: u32 = 0;
/// The end-of-turn token's id.
const END: u32 = 1;

impl ZorplexTokenizer {
    /// The tokenizer; its vocabulary depends only on the Zorplex prompts.
    pub fn new() -> Self {
        let mut pieces = vec!["<pad>".to_string(), "<end>".to_string(), "\n".to_string()];
        pieces.extend((b' '..=b'~').map(|b| char::from(b).to_string()));
        let mut words: Vec<String> = corpus()
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| w.len() > 1)
            .map(str::to_string)
            .collect();
        words.sort();
        words.dedup();
        for word in words {
            pieces.push(format!(" {word}"));
            pieces.push(word);
        }
        let mut prompts: Vec<(String, u32)> = system_prompts()
            .into_iter()
            .map(|prompt| {
                pieces.push(prompt.clone());
                (prompt, pieces.len() as u32 - 1)
            })
            .collect();
        prompts.sort_by_key(|(prompt, _)| std::cmp::Reverse(prompt.len()));
        let ids = pieces
            .iter()
            .enumerate()
            .map(|(id, piece)| (piece.clone(), id as u32))
            .collect();
        ZorplexTokenizer {
            pieces,
            ids,
            prompts,
        }
    }

    /// The tokens of the digits `0` to `9`, in order.
    pub fn digits(&self) -> [u32; 10] {
        std::array::from_fn(|d| self.ids[&d.to_string()])
    }

    /// The text of one token (`<pad>` and `<end>` for the special ones).
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    fn char_id(&self, c: char) -> Result<u32, ModelError> {
        let mut buf = [0u8; 4];
        self.ids
            .get(c.encode_utf8(&mut buf) as &str)
            .copied()
            .filter(|&id| id > END)
            .ok_or_else(|| {
                ModelError::Tokenizer(format!(
                    "{c:?} is not in the Zorplex vocabulary (printable ASCII and newline)"
                ))
            })
    }
}

impl Default for ZorplexTokenizer {
    fn default() -> Self {
        ZorplexTokenizer::new()
    }
}

impl TextTokenizer for ZorplexTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(text.len() / 2);
        let mut i = 0;
        while i < bytes.len() {
            if let Some((prompt, id)) = self
                .prompts
                .iter()
                .find(|(prompt, _)| text[i..].starts_with(prompt.as_str()))
            {
                out.push(*id);
                i += prompt.len();
                continue;
            }
            let spaced = bytes[i] == b' ' && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic);
            let start = i + usize::from(spaced);
            if spaced || bytes[i].is_ascii_alphabetic() {
                let end = start
                    + bytes[start..]
                        .iter()
                        .take_while(|b| b.is_ascii_alphabetic())
                        .count();
                if let Some(&id) = self.ids.get(&text[i..end]) {
                    out.push(id);
                    i = end;
                    continue;
                }
                if spaced {
                    if let Some(&id) = self.ids.get(&text[start..end]) {
                        out.push(self.char_id(' ')?);
                        out.push(id);
                        i = end;
                        continue;
                    }
                }
            }
            let c = text[i..].chars().next().expect("i is a char boundary");
            out.push(self.char_id(c)?);
            i += c.len_utf8();
        }
        Ok(out)
    }

    fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        let mut text = String::new();
        for &id in ids {
            match id {
                PAD | END => {}
                _ => text.push_str(self.piece(id).ok_or_else(|| {
                    ModelError::Tokenizer(format!(
                        "token id {id} is outside the vocabulary of {}",
                        self.pieces.len()
                    ))
                })?),
            }
        }
        Ok(text)
    }

    fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    fn end_of_turn(&self) -> Option<u32> {
        Some(END)
    }

    fn pad(&self) -> u32 {
        PAD
    }
}

/// The text the vocabulary's words are taken from: every system prompt,
/// the question templates, the tools' results and the scripted policies'
/// phrases.
fn corpus() -> String {
    let mut text: String = system_prompts().into_iter().map(|p| p + "\n").collect();
    text.push_str(&WORDS.join(" "));
    text.push_str(
        " User Assistant Result ANSWER SEE UNKNOWN WORD TOOL INVALID KEY LOOKUP GETKEY FETCH \
         What is the zorplex value of That is my final answer I cannot read this question \
         The tool said go on would guess am not sure how from here so",
    );
    text
}

/// The system prompt of each family of specs (they do not depend on the
/// seed or the difficulty).
fn system_prompts() -> Vec<String> {
    SpecKind::rl_mix()
        .iter()
        .map(|&kind| TaskSpec::new(kind, 0).system_prompt())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_round_trips_and_digits_are_single_tokens() {
        let tokenizer = ZorplexTokenizer::new();
        let text = corpus() + " 1234 -56 ZK_1A2B3C cats  dog x";
        let ids = tokenizer.encode(&text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        let number = tokenizer.encode("[ANSWER] -1234").unwrap();
        let pieces: Vec<&str> = number
            .iter()
            .map(|&id| tokenizer.piece(id).unwrap())
            .collect();
        assert_eq!(pieces, ["[", "ANSWER", "]", " ", "-", "1", "2", "3", "4"]);
        assert!(tokenizer.vocab_size() < 400, "{}", tokenizer.vocab_size());
    }

    #[test]
    fn text_outside_the_vocabulary_is_refused() {
        let tokenizer = ZorplexTokenizer::new();
        let error = tokenizer.encode("café").unwrap_err();
        assert!(error.to_string().contains("'é'"), "{error}");
        assert!(tokenizer.decode(&[10_000]).is_err());
    }

    #[test]
    fn a_system_prompt_is_one_token() {
        let tokenizer = ZorplexTokenizer::new();
        for kind in crate::zorplex::SpecKind::ALL {
            let prompt = TaskSpec::new(kind, 9).system_prompt() + "\n\nUser: ";
            let ids = tokenizer.encode(&prompt).unwrap();
            assert_eq!(
                ids.len(),
                6,
                "{kind}: the prompt, two newlines, User, colon, space"
            );
            assert_eq!(tokenizer.decode(&ids).unwrap(), prompt);
        }
        // A prompt's start alone is read word by word.
        assert!(tokenizer.encode("You answer questions").unwrap().len() == 3);
    }
}
