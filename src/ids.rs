//! Ids and secret tokens: the one place that makes them, so every part names things and
//! stores secrets the same way. A leaf: it imports nothing of the crate.

use sha2::{Digest, Sha256};

/// A new opaque id: 128 random bits, hex, with a prefix that says what it names.
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// A new opaque id that sorts by creation time: 48 bits of Unix milliseconds, then 80
/// random bits, hex. Rows keyed by it are appended at the end of their index rather than
/// scattered over it (so a commit dirties fewer pages).
pub fn new_sortable_id(prefix: &str) -> String {
    let millis = jiff::Timestamp::now().as_millisecond().max(0) as u64;
    let random: [u8; 10] = rand::random();
    format!(
        "{prefix}_{:012x}{}",
        millis & 0xffff_ffff_ffff,
        hex::encode(random)
    )
}

/// 32 random bytes as 64 hex digits, from the thread RNG (a CSPRNG seeded by the OS).
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// How a token is stored and looked up.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new secret token and the hash stored in its place (sessions, visitors, invitations).
pub fn new_token() -> (String, String) {
    let token = random_token();
    let hash = token_hash(&token);
    (token, hash)
}
