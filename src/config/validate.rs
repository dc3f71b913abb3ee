//! Checks across the bundle that no single file's schema can make: references between
//! files and sections, duplicates, reachability, secrets that must be set.

use super::{Bundle, Diagnostic, Env};

/// Every semantic error of a bundle whose files all parsed.
pub fn validate(_bundle: &Bundle, _env: Env<'_>) -> Vec<Diagnostic> {
    Vec::new()
}
