//! Mutations of a valid input: byte-level ([`bytes`]) for binary formats, token-level
//! ([`text`]) for text formats. Each call applies one to four random edits.

use rand::{Rng, rngs::StdRng};

/// Values that break size arithmetic, for 32-bit header fields.
pub const INTERESTING_U32: [u32; 12] = [
    0,
    1,
    2,
    0xff,
    0x100,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    28,
];

/// One random byte-level mutation of `seed`: truncation, flipped bits, special bytes,
/// inserted junk, deletions, duplicated slices (longer than a header says), a 32-bit field
/// near the start (IDX dimensions, an NPY header length) set to an extreme in either byte
/// order, or random bytes altogether.
pub fn bytes(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    const SPECIAL: [u8; 11] = [
        0, 0xff, 0x7f, 0x80, 0x1f, 0x8b, b'\n', b'"', b',', b';', b'(',
    ];
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.random_range(0..4) {
        match rng.random_range(0..9) {
            0 => b.truncate(rng.random_range(0..=b.len())),
            1 if !b.is_empty() => {
                for _ in 0..rng.random_range(1..=8) {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
            2 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] = SPECIAL[rng.random_range(0..SPECIAL.len())];
            }
            3 => {
                let i = rng.random_range(0..=b.len());
                let junk: Vec<u8> = (0..rng.random_range(1..=16))
                    .map(|_| rng.random())
                    .collect();
                b.splice(i..i, junk);
            }
            4 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                let j = rng.random_range(i..=b.len().min(i + 64));
                b.drain(i..j);
            }
            5 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                let j = rng.random_range(i..=b.len().min(i + 256));
                let copy = b[i..j].to_vec();
                let at = rng.random_range(0..=b.len());
                b.splice(at..at, copy);
            }
            6 if b.len() >= 4 => {
                let i = rng.random_range(0..=(b.len() - 4).min(64));
                let v = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
                let v = if rng.random() {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                b[i..i + 4].copy_from_slice(&v);
            }
            7 => b = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            _ => {}
        }
    }
    b
}

/// One random token-level mutation of text `seed`: a cell replaced by a hostile number or
/// by one of `tokens`, separators, quotes and line breaks inserted, pieces dropped or
/// repeated, a very long number, separator run or nesting; sometimes a byte-level one
/// after.
pub fn text(rng: &mut StdRng, seed: &str, tokens: &[&str]) -> Vec<u8> {
    const HOSTILE: [&str; 26] = [
        "NaN",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "1e999",
        "-1e999",
        "1e-400",
        "-0",
        "",
        "x",
        "1.O",
        "18446744073709551616",
        "-1",
        "99999999999999999999999999999999999999999",
        "0x10",
        "\"1\"",
        "\"",
        "\"\"",
        "null",
        "[",
        "{",
        "\u{feff}",
        "\r",
        "1,2",
        "1;2",
    ];
    const EXTRA: [&str; 14] = [
        ",", ";", "\t", "\n", " ", "\"", "=", "#", "[", "]", "\n\n", "(", ")", "'",
    ];
    let mut pieces = split_keep(seed);
    for _ in 0..1 + rng.random_range(0..3) {
        if pieces.is_empty() {
            pieces.push(String::new());
        }
        let i = rng.random_range(0..pieces.len());
        match rng.random_range(0..7) {
            0 => pieces[i] = HOSTILE[rng.random_range(0..HOSTILE.len())].to_string(),
            1 if !tokens.is_empty() => {
                pieces[i] = tokens[rng.random_range(0..tokens.len())].to_string();
            }
            2 => pieces.insert(i, EXTRA[rng.random_range(0..EXTRA.len())].to_string()),
            3 => {
                pieces.remove(i);
            }
            4 => {
                let j = rng.random_range(i..pieces.len().min(i + 40) + 1);
                let copy = pieces[i..j].to_vec();
                pieces.splice(i..i, copy);
            }
            5 => {
                let n = rng.random_range(1..2000);
                pieces[i] = match rng.random_range(0..4) {
                    0 => "9".repeat(n),
                    1 => "[".repeat(n),
                    2 => ",".repeat(n),
                    _ => format!("0.{}1", "0".repeat(n)),
                };
            }
            _ => {}
        }
    }
    let text = pieces.concat().into_bytes();
    if rng.random_range(0..4) == 0 {
        bytes(rng, &text)
    } else {
        text
    }
}

/// `text` cut into runs of word and number characters and single other characters
/// (concatenated, they give `text` back).
pub fn split_keep(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || matches!(c, '.' | '-' | '+' | '_' | '<') {
            word.push(c);
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pieces_give_the_text_back_and_mutations_change_it() {
        let seed = "a,b\n1.5,-2e3\n\"x\";7\n";
        assert_eq!(split_keep(seed).concat(), seed);
        let mut rng = StdRng::seed_from_u64(1);
        let changed = (0..200)
            .filter(|_| text(&mut rng, seed, &["q"]) != seed.as_bytes())
            .count();
        assert!(changed > 100, "{changed} of 200 changed");
        let changed = (0..200)
            .filter(|_| bytes(&mut rng, seed.as_bytes()) != seed.as_bytes())
            .count();
        assert!(changed > 100, "{changed} of 200 changed");
    }
}
