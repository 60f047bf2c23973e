//! PKCE (RFC 7636, S256) and the random strings a login needs.

use std::io::Read as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use super::AuthError;

/// `n` bytes from the kernel's CSPRNG, base64url without padding: 32 bytes give the 43-character
/// verifier, the shortest RFC 7636 allows, with 256 bits of entropy.
pub fn random_urlsafe(n: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| AuthError::Random { detail: e.to_string() })?;
    Ok(URL_SAFE_NO_PAD.encode(&buf))
}

/// A fresh code verifier (43 characters).
pub fn verifier() -> Result<String, AuthError> {
    random_urlsafe(32)
}

/// The S256 code challenge of `verifier`: base64url(sha256(verifier)) without padding.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_long_enough_urlsafe_and_differ() {
        let a = verifier().unwrap();
        let b = verifier().unwrap();
        assert_eq!(a.len(), 43);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{a}");
        assert_ne!(a, b);
    }
}
