//! Password hashing: argon2id with the crate's default (OWASP-recommended) parameters, in the
//! blocking pool because it is deliberately slow.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// A PHC string (`$argon2id$v=19$…`), never the password.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await?
}

/// Whether `password` matches the PHC string. A malformed hash never matches.
pub async fn verify(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so an unknown username takes as long
/// as a wrong password.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c21hcnRzaXRlZHVtbXk$2WbR0Zg8jQ8ZkqjQxPp6F3FvL0q5o3n7q1m6hF0v3yU";

/// Refuses weak passwords: at least 10 characters, not all of one kind.
pub fn check_strength(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 10 {
        return Err("a password needs at least 10 characters");
    }
    let kinds = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if kinds.iter().filter(|k| **k).count() < 2 {
        return Err("a password needs at least two of: lower case, upper case, digits, symbols");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash("correct horse 1".into()).await.unwrap();
        let b = hash("correct horse 1".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse 1".into(), a.clone()).await);
        assert!(!verify("correct horse 2".into(), a).await);
        assert!(!verify("x".into(), "not a hash".into()).await);
        assert!(!verify("x".into(), DUMMY_HASH.into()).await);
    }

    #[test]
    fn weak_passwords_are_refused() {
        assert!(check_strength("short1A").is_err());
        assert!(check_strength("alllowercaseletters").is_err());
        assert!(check_strength("Longer-pass-2026").is_ok());
    }
}
