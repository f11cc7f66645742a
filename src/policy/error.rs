//! The one error a policy can have: which field is wrong, and why, in words a user can act on.

use std::fmt;

/// An invalid `TOLLGATE_POLICY`: the path of the offending field and what is wrong with it.
///
/// Paths are written the way the field is reached from the top of the policy document:
/// `routes[2].limits[0].limit`, `cache_classes.SESSION.ttl`, `tiers`. An empty path means the
/// document as a whole (a syntax error, or a value that is not an object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Where the problem is (`routes[1].cache.class`); empty for the whole document.
    pub path: String,
    /// What is wrong, and when it helps, what would be right.
    pub message: String,
}

impl PolicyError {
    /// An error at `path` saying `message`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "TOLLGATE_POLICY: {}", self.message)
        } else {
            write!(f, "TOLLGATE_POLICY: {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_variable_the_field_and_the_problem() {
        let e = PolicyError::new("routes[2].limits[0].limit", "must be greater than 0");
        assert_eq!(e.to_string(), "TOLLGATE_POLICY: routes[2].limits[0].limit: must be greater than 0");
    }

    #[test]
    fn display_of_a_document_error_has_no_empty_path() {
        let e = PolicyError::new("", "expected a JSON object");
        assert_eq!(e.to_string(), "TOLLGATE_POLICY: expected a JSON object");
    }
}
