//! Server-provided nonces (RFC 9449 §8 at the token endpoint, §9 at a resource server) that
//! need no storage: a nonce is an HMAC of the current time bucket, so any instance holding the
//! secret can tell a nonce it (or a sibling) handed out from one it did not.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::constant_time;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::BuildError;

/// Separates these MACs from anything else the same secret might be used for.
const LABEL: &[u8] = b"scopegate dpop nonce v1\0";

/// The shortest secret accepted: the HMAC-SHA256 key size (RFC 2104 §3).
const MIN_SECRET_BYTES: usize = 32;

/// Stateless DPoP nonces: `base64url(HMAC-SHA256(secret, time bucket))`.
///
/// A nonce is accepted during its own bucket and the next one, so a client holding the nonce
/// of the moment has between one and two rotation periods to use it (default: 5 minutes each).
/// Instances built [from the same secret](Self::from_secret) agree with each other; a
/// [random](Self::random) secret suits a single instance. No HTTP here: the token service
/// (`DPoP-Nonce` beside `/token`, §8) and a resource server (§9) can use the same type — with
/// different secrets, so that a nonce of one is not taken by the other.
///
/// ```
/// use std::time::Duration;
/// use scopegate_validator::dpop::DpopNonces;
///
/// let secret = [7u8; 32]; // from the deployment's secret store
/// let here = DpopNonces::from_secret(&secret)?;
/// let sibling = DpopNonces::from_secret(&secret)?;
/// let now = Duration::from_secs(1_800_000_000);
/// let nonce = here.current(now);
/// assert!(sibling.accepts(&nonce, now + Duration::from_secs(300)));
/// assert!(!sibling.accepts(&nonce, now + Duration::from_secs(900)));
/// # Ok::<(), scopegate_validator::BuildError>(())
/// ```
#[derive(Clone)]
pub struct DpopNonces {
    key: hmac::Key,
    rotation: Duration,
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("DpopNonces")
            .field("secret", &"[redacted]")
            .field("rotation", &self.rotation)
            .finish()
    }
}

impl DpopNonces {
    /// Nonces under a fresh random secret: for one instance (nonces do not survive a restart,
    /// which costs each client one `use_dpop_nonce` round trip).
    ///
    /// # Errors
    /// [`BuildError`] (field `dpop_nonces`) if the system's random generator fails.
    pub fn random() -> Result<Self, BuildError> {
        let mut secret = [0u8; MIN_SECRET_BYTES];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| BuildError::new("dpop_nonces", "the random generator failed"))?;
        Self::from_secret(&secret)
    }

    /// Nonces under `secret`, shared by every instance that must accept each other's nonces.
    ///
    /// # Errors
    /// [`BuildError`] (field `dpop_nonces`) for a secret shorter than 32 bytes.
    ///
    /// # Security
    /// Whoever knows the secret can make valid nonces: keep it with the deployment's other
    /// secrets, and use another one at the token service.
    pub fn from_secret(secret: &[u8]) -> Result<Self, BuildError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(BuildError::new(
                "dpop_nonces",
                format!("the secret must have at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            rotation: Duration::from_secs(300),
        })
    }

    /// How long a bucket lasts (default 5 minutes): a nonce is accepted for one to two of
    /// these.
    ///
    /// # Errors
    /// [`BuildError`] (field `dpop_nonces`) unless it is whole seconds, from 1 s to 1 hour.
    pub fn rotating_every(mut self, rotation: Duration) -> Result<Self, BuildError> {
        if rotation.subsec_nanos() != 0
            || !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&rotation)
        {
            return Err(BuildError::new(
                "dpop_nonces",
                "the rotation must be whole seconds, from 1 s to 1 hour",
            ));
        }
        self.rotation = rotation;
        Ok(self)
    }

    /// The nonce to hand out at `now` (seconds since the epoch), for a `DPoP-Nonce` header.
    #[must_use]
    pub fn current(&self, now: Duration) -> String {
        URL_SAFE_NO_PAD.encode(self.tag(self.bucket(now)))
    }

    /// Whether `nonce` is the one of `now`'s bucket or of the one before.
    #[must_use]
    pub fn accepts(&self, nonce: &str, now: Duration) -> bool {
        let bucket = self.bucket(now);
        self.is_of(nonce, bucket)
            || bucket
                .checked_sub(1)
                .is_some_and(|previous| self.is_of(nonce, previous))
    }

    /// The nonce rule for a proof that passed [`verify_proof`](super::verify_proof): it must
    /// carry a nonce [accepted](Self::accepts) at `now` — the one check every server that
    /// uses nonces makes (RFC 9449 §8 at the token endpoint, §9 at a resource server).
    ///
    /// # Errors
    /// [`DpopError::UseNonce`](super::DpopError::UseNonce) (answered `use_dpop_nonce`, with [`current`](Self::current)
    /// in a `DPoP-Nonce` header) for a proof without a nonce or with one not accepted.
    pub fn check(&self, proof: &super::DpopProof, now: Duration) -> Result<(), super::DpopError> {
        match proof.nonce.as_deref() {
            Some(nonce) if self.accepts(nonce, now) => Ok(()),
            _ => Err(super::DpopError::UseNonce),
        }
    }

    /// Whether `nonce` is the one [`current`](Self::current) gives at `now` (an accepted nonce
    /// that is not current is worth replacing before it expires, RFC 9449 §8.2).
    #[must_use]
    pub fn is_current(&self, nonce: &str, now: Duration) -> bool {
        self.is_of(nonce, self.bucket(now))
    }

    fn bucket(&self, now: Duration) -> u64 {
        now.as_secs() / self.rotation.as_secs()
    }

    fn tag(&self, bucket: u64) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(LABEL);
        context.update(&bucket.to_be_bytes());
        context.sign()
    }

    fn is_of(&self, nonce: &str, bucket: u64) -> bool {
        let mut decoded = [0u8; 32];
        matches!(URL_SAFE_NO_PAD.decode_slice(nonce, &mut decoded), Ok(32))
            && constant_time::verify_slices_are_equal(&decoded, self.tag(bucket).as_ref()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_800_000_000);
    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_nonce_lives_for_its_bucket_and_the_next() {
        let nonces = DpopNonces::random()
            .unwrap()
            .rotating_every(MINUTE)
            .unwrap();
        // NOW is a whole number of minutes: the start of a bucket.
        let nonce = nonces.current(NOW);
        assert_eq!(nonce.len(), 43);
        assert!(nonces.is_current(&nonce, NOW + Duration::from_secs(59)));
        assert!(nonces.accepts(&nonce, NOW + Duration::from_secs(119)));
        assert!(!nonces.is_current(&nonce, NOW + MINUTE));
        assert!(!nonces.accepts(&nonce, NOW + MINUTE * 2));
        assert!(
            !nonces.accepts(&nonce, NOW - MINUTE),
            "not before it was made"
        );
    }

    #[test]
    fn a_proof_passes_the_nonce_rule_only_with_an_accepted_nonce() {
        let nonces = DpopNonces::random().unwrap();
        let proof = |nonce: Option<String>| crate::dpop::DpopProof {
            jkt: "k".into(),
            jti: "j".into(),
            issued_at: NOW.as_secs(),
            nonce,
        };
        assert_eq!(nonces.check(&proof(Some(nonces.current(NOW))), NOW), Ok(()));
        for refused in [None, Some("made-up".to_owned())] {
            assert_eq!(
                nonces.check(&proof(refused), NOW),
                Err(crate::dpop::DpopError::UseNonce)
            );
        }
    }

    #[test]
    fn instances_sharing_a_secret_agree_and_others_do_not() {
        let secret = [42u8; 32];
        let one = DpopNonces::from_secret(&secret).unwrap();
        let two = DpopNonces::from_secret(&secret).unwrap();
        let stranger = DpopNonces::from_secret(&[43u8; 32]).unwrap();
        let nonce = one.current(NOW);
        assert!(two.accepts(&nonce, NOW));
        assert!(!stranger.accepts(&nonce, NOW));
        assert!(!DpopNonces::random().unwrap().accepts(&nonce, NOW));
    }

    #[test]
    fn malformed_nonces_are_refused_without_panicking() {
        let nonces = DpopNonces::random().unwrap();
        let good = nonces.current(NOW);
        for bad in [
            "",
            "x",
            "====",
            &good[..42],
            &format!("{good}A"),
            "é",
            &"A".repeat(10_000),
        ] {
            assert!(!nonces.accepts(bad, NOW), "{bad:?}");
        }
        assert!(!nonces.accepts(&good, Duration::ZERO));
    }

    #[test]
    fn bad_settings_are_refused_and_the_secret_never_printed() {
        assert_eq!(
            DpopNonces::from_secret(&[1u8; 31]).unwrap_err().field(),
            "dpop_nonces"
        );
        let nonces = DpopNonces::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        for rotation in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(3601),
        ] {
            assert!(
                nonces.clone().rotating_every(rotation).is_err(),
                "{rotation:?}"
            );
        }
        assert!(!format!("{nonces:?}").contains("0123"));
    }
}
