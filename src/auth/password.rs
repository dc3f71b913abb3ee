//! Agent passwords as argon2id PHC strings (`$argon2id$v=19$m=…`) with a random salt.
//!
//! Hashing is slow on purpose. The server runs it on the blocking pool, a few at a time, and
//! spends the same time on a login whether or not the email has a password.

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
use tokio::sync::Semaphore;

/// The shortest password `livechat agent password` takes, in characters.
pub const MIN_LEN: usize = 8;

/// What a login for an unknown email, or for an agent without a password, is checked
/// against: the same work as a real check, so the answer's timing says nothing about which
/// emails exist. Made with the default parameters, like every real hash (a test holds it so).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$8xYS0f0fvTIScHtAqV/5HQ$/mEviOa23mj/Z5qlVP9EXr01XHCL54VbJo0tyYcUBr0";

/// Checks running at once. Each takes ~19 MiB and a core for a while: a burst of logins
/// queues here instead of filling the blocking pool and the memory.
const MAX_CHECKS: usize = 4;
static CHECKS: Semaphore = Semaphore::const_new(MAX_CHECKS);

/// argon2's working memory, kept for the next check rather than freed. Freed 19 MiB blocks
/// stay resident with glibc's malloc (its mmap threshold grows past them after the first
/// free), about 9 MB per sign-in without end; reused, it is 19 MiB per check that ever ran
/// at once, at most [`MAX_CHECKS`].
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs `work` on `blocks` blocks of pooled memory; `None` when they cannot be allocated.
/// Only buffers of the default size are kept: a hash made with a larger `m` (not by this
/// server) does not pin its memory.
fn with_memory<R>(blocks: usize, work: impl FnOnce(&mut [Block]) -> R) -> Option<R> {
    let pool = || MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    let mut memory = pool().pop().unwrap_or_default();
    if memory.len() < blocks {
        memory.try_reserve_exact(blocks - memory.len()).ok()?;
        memory.resize(blocks, Block::default());
    }
    let result = work(&mut memory[..blocks]);
    let mut kept = pool();
    if kept.len() < MAX_CHECKS && memory.len() <= Params::default().block_count() {
        kept.push(memory);
    }
    Some(result)
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is too short: use at least {MIN_LEN} characters")]
    TooShort,
    #[error("cannot hash the password: {0}")]
    Hash(argon2::password_hash::Error),
}

/// The PHC string to store for `password`, with a fresh random salt. Slow.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

/// Whether `password` matches `stored`. With no stored hash (or an unreadable one) it still
/// does the work of a check, then answers false. Slow and blocking.
pub fn verify_blocking(password: &str, stored: Option<&str>) -> bool {
    let parsed = stored.and_then(|s| match PasswordHash::new(s) {
        Ok(hash) => Some(hash),
        Err(e) => {
            tracing::warn!("a stored password hash cannot be read ({e}); set the password again");
            None
        }
    });
    match parsed {
        Some(hash) => matches(password, &hash),
        None => {
            let dummy = PasswordHash::new(DUMMY_HASH).expect("the dummy hash is a PHC string");
            let _ = matches(password, &dummy);
            false
        }
    }
}

/// Hashes `password` as `hash` says (algorithm, version, parameters, salt), in pooled
/// memory, and compares in constant time. An unusable hash matches nothing.
fn matches(password: &str, hash: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let hashed = with_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
    });
    matches!(hashed, Some(Ok(()))) && crate::auth::constant_time_eq(&out, expected.as_bytes())
}

/// `verify_blocking` on the blocking pool, at most a few at once.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    // The semaphore is never closed, so acquiring only waits.
    let Ok(permit) = CHECKS.acquire().await else {
        return false;
    };
    // The permit goes with the check: a caller that gives up (a cancelled request) does not
    // free it while the check still runs.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        verify_blocking(&password, stored.as_deref())
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{Algorithm, Params};

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert!(verify_blocking("correct horse", Some(&stored)));
        assert!(!verify_blocking("correct horsE", Some(&stored)));
    }

    #[test]
    fn each_hash_has_its_own_salt() {
        assert_ne!(
            hash("same password").unwrap(),
            hash("same password").unwrap()
        );
    }

    #[test]
    fn short_passwords_are_refused_counting_characters() {
        assert!(matches!(hash("1234567"), Err(PasswordError::TooShort)));
        // Eight characters, more bytes than that.
        assert!(hash("éééééééé").is_ok());
        assert!(matches!(hash("ééé"), Err(PasswordError::TooShort)));
    }

    #[test]
    fn without_a_stored_hash_nothing_verifies() {
        assert!(!verify_blocking(
            "livechat dummy password, never anyone's",
            None
        ));
        assert!(!verify_blocking(
            "anything at all",
            Some("not a phc string")
        ));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real_hash = hash("some password").unwrap();
        let real = PasswordHash::new(&real_hash).unwrap();
        assert_eq!(dummy.algorithm, Algorithm::Argon2id.ident());
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        let cost = |p: &Params| (p.m_cost(), p.t_cost(), p.p_cost());
        for hash in [&dummy, &real] {
            assert_eq!(
                cost(&Params::try_from(hash).unwrap()),
                cost(&Params::default())
            );
        }
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[test]
    fn hashes_made_elsewhere_verify_by_their_own_parameters() {
        use argon2::CustomizedPasswordHasher;
        // Another algorithm, version and cost, as another tool might have written.
        let params = Params::new(8 * 1024, 1, 1, Some(24)).unwrap();
        let other = Argon2::default()
            .hash_password_customized(
                b"pass phrase",
                b"saltsaltsalt",
                Some("argon2i"),
                Some(0x10),
                params,
            )
            .unwrap()
            .to_string();
        assert!(
            other.starts_with("$argon2i$v=16$m=8192,t=1,p=1$"),
            "{other}"
        );
        assert!(verify_blocking("pass phrase", Some(&other)));
        assert!(!verify_blocking("pass phrasE", Some(&other)));
    }

    #[test]
    fn pooled_working_memory_is_bounded() {
        // Other tests check passwords at the same time (the pool is shared): what always
        // holds is the bound, in number and in size.
        use argon2::CustomizedPasswordHasher;
        let stored = hash("reuse the memory").unwrap();
        for _ in 0..MAX_CHECKS + 2 {
            assert!(verify_blocking("reuse the memory", Some(&stored)));
        }
        // A hash that needs twice the default memory verifies, and its memory is not kept.
        let big = Params::new(2 * Params::DEFAULT_M_COST, 1, 1, None).unwrap();
        let large = Argon2::default()
            .hash_password_customized(b"large memory", b"saltsaltsalt", None, None, big)
            .unwrap()
            .to_string();
        assert!(verify_blocking("large memory", Some(&large)));
        let kept = MEMORY.lock().unwrap();
        assert!(kept.len() <= MAX_CHECKS, "{}", kept.len());
        let blocks = Params::default().block_count();
        assert!(kept.iter().all(|m| m.len() <= blocks));
    }
}
