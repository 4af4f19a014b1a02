//! The JWS algorithms a validator may accept. HMAC and `none` are not representable: a public
//! key can never be used as an HMAC secret (RFC 8725 §2.1, §3.1).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self as sig, VerificationAlgorithm};

/// An asymmetric JWS signature algorithm (RFC 7518 §3, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

/// The kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 10] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
        Self::EdDSA,
    ];

    /// The registered JWS name (`RS256`, ..., `EdDSA`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Looks up an `alg` value exactly as registered (case-sensitive, RFC 7515 §4.1.1).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    pub(crate) const fn key_kind(self) -> KeyKind {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyKind::Rsa
            }
            Self::ES256 => KeyKind::P256,
            Self::ES384 => KeyKind::P384,
            Self::ES512 => KeyKind::P521,
            Self::EdDSA => KeyKind::Ed25519,
        }
    }

    /// The aws-lc-rs verification algorithm. RSA keys must have 2048 to 8192 bits; ECDSA
    /// signatures are the fixed-length `r || s` of RFC 7518 §3.4, never DER.
    pub(crate) fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Self::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Self::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Self::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Self::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Self::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Self::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            Self::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Self::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Self::ES512 => &sig::ECDSA_P521_SHA512_FIXED,
            Self::EdDSA => &sig::ED25519,
        }
    }

    pub(crate) fn rsa_parameters(self) -> Option<&'static sig::RsaParameters> {
        match self {
            Self::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
            Self::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
            Self::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
            Self::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
            Self::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
            Self::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
            Self::ES256 | Self::ES384 | Self::ES512 | Self::EdDSA => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An `alg` name that is not one of [`Algorithm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported algorithm {0:?} (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)"
)]
pub struct UnsupportedAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name).ok_or_else(|| UnsupportedAlgorithm(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), alg);
        }
        assert!("rs256".parse::<Algorithm>().is_err());
        assert!("HS256".parse::<Algorithm>().is_err());
        assert!("none".parse::<Algorithm>().is_err());
        assert_eq!("ES512".parse::<Algorithm>().unwrap(), Algorithm::ES512);
        assert!("ES521".parse::<Algorithm>().is_err());
    }
}
