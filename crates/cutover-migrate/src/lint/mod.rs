//! The lint run before anything is applied: squawk's rules for lock-heavy DDL, plus a few of
//! our own. A finding stops the migration unless the file allows that rule by name
//! (`-- cutover:allow <rule>`) or the project's [`LintPolicy`] does, and every finding says what
//! to do instead.
//!
//! Not findings: anything in a migration at or below the policy's baseline (history), and
//! statements that only touch tables created earlier in the same migration (no other session
//! can hold or wait for a lock on a table it cannot see yet). A statement on a new table that
//! references another (`REFERENCES`) is still judged: the foreign key locks the other table.

mod finding;
#[cfg(feature = "sql")]
mod policy;
#[cfg(feature = "sql")]
mod rules;

pub use finding::Finding;
#[cfg(feature = "sql")]
pub use policy::{LintPolicy, POLICY_FILE, VersionRange};
#[cfg(feature = "sql")]
pub(crate) use rules::lint_split;
#[cfg(feature = "sql")]
pub use rules::{is_known_rule, lint, rule_names};
