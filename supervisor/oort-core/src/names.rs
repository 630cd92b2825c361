//! eKuiper's naming rule and the two spellings derived from names: the
//! case-folded lookup key and lower-case hexadecimal digests. One home, so
//! the catalog, the installer, the host and the rule registry agree.

/// eKuiper's naming rule for plugins, streams and rules: `^[A-Za-z0-9_-]+$`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The lookup key of a plugin name: its first letter lowercased, so either
/// case of it matches (eKuiper registers `Echo` and `echo` alike).
pub fn fold(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => {
            let mut folded = String::with_capacity(name.len());
            folded.push(first.to_ascii_lowercase());
            folded.push_str(chars.as_str());
            folded
        }
        None => String::new(),
    }
}

/// Lower-case hexadecimal, as sha256 sums are reported.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ekuipers_rule() {
        assert!(is_valid_name("random") && is_valid_name("my-sink_2") && is_valid_name("Echo"));
        for bad in ["", "a b", "a/b", "..", "a@1", "é"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_the_first_letter_is_folded() {
        assert_eq!(fold("Echo"), "echo");
        assert_eq!(fold("eCHO"), "eCHO");
        assert_eq!(fold(""), "");
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
