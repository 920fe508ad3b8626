//! Bearer tokens as `smartsite serve` checks them (shared/src/auth.rs `JwtVerifier::verify`, then
//! `Caller::from_claims`). Even first bytes: the rest is the token, whatever it is. Odd: the rest
//! is a claims payload, signed with the verifier's own key, so the claims checks behind the
//! signature are reached too.
#![no_main]

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use libfuzzer_sys::fuzz_target;
use smartsite_shared::auth::{Caller, Claims, JwtVerifier};

const ISSUER: &str = "https://smartsite.fuzz";
const AUDIENCE: &str = "smartsite";
const KID: &str = "fuzz-key";

struct Keys {
    pair: EcdsaKeyPair,
    verifier: JwtVerifier,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap_or_else(|_| panic!("P-256 key generation"));
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
            .unwrap_or_else(|_| panic!("P-256 key"));
        let point = pair.public_key().as_ref();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
            "kid": KID, "use": "sig", "alg": "ES256"
        }]}))
        .unwrap_or_else(|e| panic!("JWK set: {e}"));
        let verifier = JwtVerifier::from_jwks(&jwks, ISSUER, Some(AUDIENCE))
            .unwrap_or_else(|e| panic!("verifier: {e}"));
        Keys { pair, verifier }
    })
}

fn signed(claims: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{KID}"}}"#));
    let input = format!("{header}.{}", b64.encode(claims));
    let sig = keys()
        .pair
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap_or_else(|_| panic!("signing"));
    format!("{input}.{}", b64.encode(sig.as_ref()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode.is_multiple_of(2) {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        signed(rest)
    };
    let k = keys();
    if let Ok(claims) = k.verifier.verify::<Claims>(&token) {
        let _ = Caller::from_claims(&claims);
        // Whatever passed carried our issuer and audience and an expiry not long past. (The
        // payload may still hold bytes a strict JSON reading refuses in claims nobody reads.)
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = token
            .split('.')
            .nth(1)
            .and_then(|p| b64.decode(p).ok())
            .unwrap_or_default();
        if let Ok(raw) = serde_json::from_slice::<serde_json::Value>(&payload) {
            assert_eq!(raw["iss"], ISSUER, "{raw}");
            let aud_ok = raw["aud"] == AUDIENCE
                || raw["aud"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == AUDIENCE));
            assert!(aud_ok, "accepted for another audience: {raw}");
            let exp = raw["exp"].as_f64().unwrap_or(f64::MIN);
            let now = chrono::Utc::now().timestamp() as f64;
            assert!(exp >= now - 120.0, "expired {} s ago: {raw}", now - exp);
        }
    }
});
