//! The opaque access token's format, and the key the store finds it by.
//!
//! A token is 40 bytes, base64url (54 characters): the time it was issued (microseconds since
//! the epoch, 8 bytes big-endian) then 256 random bits. The store keeps only its key: that time
//! then the SHA-256 of the whole token. Keys issued one after another sort one after another,
//! so each new row lands on the last page of the table and of its index instead of on a random
//! page (a random SHA-256 key dirtied a page per token, which each commit wrote whole: issuance
//! was bound by it). The digest is what proves a token: a presented token is found only if its
//! SHA-256 is the one stored, whatever its first 8 bytes say. Tokens issued before this format
//! (43 characters, 256 random bits) are still found, by their SHA-256 alone.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secret::token_digest;

/// Bytes of issue time before the random part.
const ORDER_BYTES: usize = 8;
/// Random bytes in a token: 256 bits.
pub const RANDOM_BYTES: usize = 32;
/// A token of this format, decoded: the issue time and its random part.
const TOKEN_BYTES: usize = ORDER_BYTES + RANDOM_BYTES;

/// A new opaque access token issued `since_epoch` after the epoch, whose random part is
/// `random` (fresh from the system RNG).
#[must_use]
pub fn new(since_epoch: Duration, random: &[u8; RANDOM_BYTES]) -> String {
    let mut token = [0u8; TOKEN_BYTES];
    token[..ORDER_BYTES].copy_from_slice(&order(since_epoch));
    token[ORDER_BYTES..].copy_from_slice(random);
    URL_SAFE_NO_PAD.encode(token)
}

/// Microseconds since the epoch, big-endian: byte order is time order.
fn order(since_epoch: Duration) -> [u8; ORDER_BYTES] {
    u64::try_from(since_epoch.as_micros())
        .unwrap_or(u64::MAX)
        .to_be_bytes()
}

/// How the store finds an opaque access token: its issue time, when the token carries one,
/// then its SHA-256. `Debug` shows the digest's first bytes only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenKey {
    /// The issue time then the digest; the time is all zero for a token without one.
    bytes: [u8; TOKEN_BYTES],
    /// Whether the token carries its issue time (else it is keyed by its digest alone).
    ordered: bool,
}

impl TokenKey {
    /// The key of `token`, whatever it is: a value that is no token of ours gets a key no row
    /// has.
    #[must_use]
    pub fn of(token: &str) -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[ORDER_BYTES..].copy_from_slice(&token_digest(token));
        let mut decoded = [0u8; TOKEN_BYTES];
        // Only a value of exactly this format's length can carry an issue time.
        let ordered = token.len() == URL_SAFE_NO_PAD_LENGTH
            && URL_SAFE_NO_PAD.decode_slice(token, &mut decoded) == Ok(TOKEN_BYTES);
        if ordered {
            bytes[..ORDER_BYTES].copy_from_slice(&decoded[..ORDER_BYTES]);
        }
        Self { bytes, ordered }
    }

    /// The key as stored: 40 bytes, or the 32 of the digest for a token without an issue time.
    #[must_use]
    pub fn as_stored(&self) -> &[u8] {
        if self.ordered {
            &self.bytes
        } else {
            &self.bytes[ORDER_BYTES..]
        }
    }

    /// A key read back from the store; `None` unless it is 40 or 32 bytes.
    #[must_use]
    pub(crate) fn from_stored(stored: &[u8]) -> Option<Self> {
        let mut bytes = [0u8; TOKEN_BYTES];
        let ordered = match stored.len() {
            TOKEN_BYTES => true,
            32 => false,
            _ => return None,
        };
        bytes[TOKEN_BYTES - stored.len()..].copy_from_slice(stored);
        Some(Self { bytes, ordered })
    }

    /// The SHA-256 of the token: what names it to the APIs (revocation events), which hold
    /// the token and can compute it.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&self.bytes[ORDER_BYTES..]);
        digest
    }

    /// A key made of `digest` alone, as a token without an issue time has: for tests that
    /// need rows of their own.
    #[doc(hidden)]
    #[must_use]
    pub fn from_digest(digest: [u8; 32]) -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[ORDER_BYTES..].copy_from_slice(&digest);
        Self {
            bytes,
            ordered: false,
        }
    }
}

/// 40 bytes in unpadded base64url.
const URL_SAFE_NO_PAD_LENGTH: usize = (TOKEN_BYTES * 4).div_ceil(3);

impl fmt::Debug for TokenKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digest = self.digest();
        write!(
            formatter,
            "TokenKey({:02x}{:02x}{:02x}{:02x}…)",
            digest[0], digest[1], digest[2], digest[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::random_bytes;

    #[test]
    fn a_token_is_its_issue_time_then_256_random_bits() {
        let at = Duration::from_micros(1_800_000_000_123_456);
        let token = new(at, &random_bytes());
        assert_eq!(token.len(), 54);
        let decoded = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert_eq!(decoded[..8], 1_800_000_000_123_456u64.to_be_bytes());
        assert_ne!(new(at, &random_bytes()), token, "the random part differs");
        let key = TokenKey::of(&token);
        assert_eq!(key.as_stored()[..8], decoded[..8]);
        assert_eq!(key.as_stored()[8..], token_digest(&token));
        assert_eq!(key.digest(), token_digest(&token));
        assert_eq!(TokenKey::from_stored(key.as_stored()), Some(key));
    }

    #[test]
    fn keys_of_later_tokens_sort_later() {
        let mut keys: Vec<Vec<u8>> = (0..100u64)
            .map(|step| {
                let at = Duration::from_micros(1_800_000_000_000_000 + step * 997);
                TokenKey::of(&new(at, &random_bytes())).as_stored().to_vec()
            })
            .collect();
        let issued = keys.clone();
        keys.sort();
        assert_eq!(keys, issued);
    }

    #[test]
    fn a_token_of_the_earlier_format_is_keyed_by_its_digest_alone() {
        let token = crate::secret::random_token();
        assert_eq!(token.len(), 43);
        let key = TokenKey::of(&token);
        assert_eq!(key.as_stored(), token_digest(&token));
        assert_eq!(TokenKey::from_stored(key.as_stored()), Some(key));
        assert_eq!(key, TokenKey::from_digest(token_digest(&token)));
    }

    /// Whatever is presented gets a key that holds its SHA-256: changing a token's issue time
    /// (or anything else) changes its key's digest, so it finds no row.
    #[test]
    fn any_value_gets_a_key_holding_its_digest() {
        let token = new(Duration::from_secs(1_800_000_000), &random_bytes());
        let mut altered = token.clone().into_bytes();
        altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        for value in [
            "",
            "a",
            "not base64 but fifty-four characters long, exactly!!!!",
            &"A".repeat(54),
            &"_".repeat(55),
            &altered,
        ] {
            let key = TokenKey::of(value);
            assert_eq!(key.digest(), token_digest(value), "{value:?}");
            assert_ne!(key, TokenKey::of(&token));
        }
    }

    #[test]
    fn stored_keys_of_another_length_are_refused() {
        for length in [0, 8, 31, 33, 39, 41, 64] {
            assert_eq!(TokenKey::from_stored(&vec![7; length]), None, "{length}");
        }
    }

    #[test]
    fn debug_shows_no_whole_digest() {
        let key = TokenKey::of(&new(Duration::from_secs(1), &random_bytes()));
        let shown = format!("{key:?}");
        assert!(shown.len() < 24, "{shown}");
    }
}
