//! The ledger's own schema version and its upgrade path.

use crate::MigrateError;

/// The shape of the ledger this version of cutover-migrate writes. Each change to it raises
/// this number and adds its upgrade step (an added column) to the list the backends apply.
pub const LEDGER_SCHEMA: i64 = 4;

/// Where the schema version is kept: a one-row table next to the ledger on the SQL databases; a
/// document with this `_id` in the ledger collection on MongoDB.
pub const LEDGER_SCHEMA_TABLE: &str = "_cutover_migrations_schema";

/// A column (a field, on MongoDB) that a schema added.
#[derive(Debug)]
pub(crate) struct Upgrade {
    /// The schema that added it.
    pub(crate) schema: i64,
    /// The column, added empty (`NULL`) to existing rows (MongoDB adds fields as it writes them).
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) column: &'static str,
}

/// From schema 1 (cutover-migrate 0.1, whose ledger has no version) to [`LEDGER_SCHEMA`], in
/// order. Additive only: a ledger is upgraded in place without touching its rows.
pub(crate) const UPGRADES: &[Upgrade] = &[
    // 2: a down stored in the ledger carries the checksum it must still match to be run.
    Upgrade {
        schema: 2,
        column: "down_checksum",
    },
    // 3: where an adopted migration's record came from (`baseline`, `sqlx`, ...).
    Upgrade {
        schema: 3,
        column: "adopted_from",
    },
    // 4: a contract migration run past live instances that did not embed it: who, why, which.
    Upgrade {
        schema: 4,
        column: "forced_contract",
    },
];

/// The upgrades a ledger at schema `found` (`None`: a ledger from before versions were kept,
/// or one just created) needs, or an error when a newer cutover-migrate wrote it.
pub(crate) fn check_schema(found: Option<i64>) -> Result<impl Iterator<Item = &'static Upgrade>, MigrateError> {
    let found = found.unwrap_or(1);
    if found > LEDGER_SCHEMA {
        return Err(MigrateError::LedgerTooNew {
            found,
            known: LEDGER_SCHEMA,
        });
    }
    Ok(UPGRADES.iter().filter(move |upgrade| upgrade.schema > found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_run_in_order_from_the_found_schema_and_a_newer_ledger_is_refused() {
        let columns = |found| check_schema(found).unwrap().map(|u| u.column).collect::<Vec<_>>();
        assert_eq!(columns(None), ["down_checksum", "adopted_from", "forced_contract"]);
        assert_eq!(columns(Some(2)), ["adopted_from", "forced_contract"]);
        assert!(columns(Some(LEDGER_SCHEMA)).is_empty());
        assert_eq!(
            UPGRADES.last().map(|u| u.schema),
            Some(LEDGER_SCHEMA),
            "the last upgrade reaches the current schema"
        );
        let refused = check_schema(Some(LEDGER_SCHEMA + 1)).err().unwrap().to_string();
        assert!(refused.contains("newer cutover-migrate"), "{refused}");
    }
}
