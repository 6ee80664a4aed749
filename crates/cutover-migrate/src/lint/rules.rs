//! squawk's rules and our own, applied to one SQL migration.

use std::str::FromStr;

use squawk_linter::{Linter, Rule, Version};
use squawk_syntax::SourceFile;

use super::{Finding, LintPolicy};
use crate::{Migration, statements};

/// Squawk rules about style rather than locks or compatibility: left to taste.
const STYLE_RULES: &[Rule] = &[
    Rule::PreferBigintOverInt,
    Rule::PreferBigintOverSmallint,
    Rule::PreferIdentity,
    Rule::PreferTextField,
    Rule::PreferTimestampTz,
    Rule::BanCharField,
    // Non-transactional migrations resume at the failed statement, so statements that ran are
    // never repeated and need not be idempotent.
    Rule::PreferRobustStmts,
    // The runner sets `lock_timeout` on every statement itself (and retries), and leaves
    // `statement_timeout` alone on purpose: a concurrent index build may take hours.
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
    Rule::RequireTimeoutSettings,
];

/// Our own rules.
const UNBATCHED_UPDATE: &str = "unbatched-update";
const JSON_COLUMN: &str = "json-column";

/// Whether `name` is a rule that `-- cutover:allow` may name.
pub fn is_known_rule(name: &str) -> bool {
    name == UNBATCHED_UPDATE || name == JSON_COLUMN || Rule::from_str(name).is_ok()
}

/// Lint one migration against PostgreSQL `server_major`, under `policy`.
pub fn lint(migration: &Migration, server_major: u32, runs_in_transaction: bool, policy: &LintPolicy) -> Vec<Finding> {
    let statements = migration
        .sql()
        .and_then(|sql| statements::split(sql).ok())
        .unwrap_or_default();
    lint_split(migration, &statements, server_major, runs_in_transaction, policy)
}

/// [`lint`] with the migration's statements already split (the runner's plan has them).
pub(crate) fn lint_split(
    migration: &Migration,
    statements: &[statements::Statement],
    server_major: u32,
    runs_in_transaction: bool,
    policy: &LintPolicy,
) -> Vec<Finding> {
    let Some(sql) = migration.sql() else {
        return Vec::new();
    };
    if policy.is_history(migration.version) {
        return Vec::new();
    }
    let parse = SourceFile::parse(sql);
    let mut linter = Linter::with_rules(&[], STYLE_RULES);
    if let Ok(version) = Version::from_str(&server_major.to_string()) {
        linter.settings.pg_version = version;
    }
    linter.settings.assume_in_transaction = runs_in_transaction;
    let line_of = |offset: usize| sql[..offset.min(sql.len())].bytes().filter(|b| *b == b'\n').count() + 1;
    let mut findings: Vec<Finding> = linter
        .lint(&parse, sql)
        .into_iter()
        .map(|violation| {
            let rule = violation.code.to_string();
            Finding {
                version: migration.version,
                origin: migration.origin.clone(),
                line: line_of(usize::from(violation.text_range.start())),
                allowed: migration.allow.contains(&rule) || policy.allows(&rule, migration.version),
                rule,
                message: violation.message,
                help: violation.help,
            }
        })
        .collect();
    findings.extend(own_rules(migration, statements, policy));
    findings.retain(|finding| !only_touches_new_tables(statements, finding.line));
    findings.sort_by_key(|f| f.line);
    findings
}

/// Whether the statement at `line` only touches tables created by it or earlier in the same
/// migration, and references no other table.
fn only_touches_new_tables(statements: &[statements::Statement], line: usize) -> bool {
    let Some(at) = statements.iter().rposition(|s| s.line <= line) else {
        return false;
    };
    let statement = &statements[at];
    let created: Vec<&str> = statements[..=at]
        .iter()
        .filter_map(|s| s.created_table.as_deref())
        .collect();
    let touched: Vec<&str> = statement
        .tables
        .iter()
        .map(String::as_str)
        .chain(statement.created_table.as_deref())
        .collect();
    let references_another = statement
        .text
        .to_ascii_uppercase()
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| word == "REFERENCES");
    !touched.is_empty() && touched.iter().all(|table| created.contains(table)) && !references_another
}

fn own_rules(migration: &Migration, statements: &[statements::Statement], policy: &LintPolicy) -> Vec<Finding> {
    let created: Vec<String> = statements.iter().filter_map(|s| s.created_table.clone()).collect();
    let mut findings = Vec::new();
    let finding = |statement: &statements::Statement, rule: &str, message: String, help: &str| Finding {
        version: migration.version,
        origin: migration.origin.clone(),
        line: statement.line,
        rule: rule.to_owned(),
        message,
        help: Some(help.to_owned()),
        allowed: migration.allow.iter().any(|r| r == rule) || policy.allows(rule, migration.version),
    };
    for statement in statements {
        let upper = statement.text.to_ascii_uppercase();
        let is_write = upper.starts_with("UPDATE ") || upper.starts_with("DELETE ");
        if is_write && migration.backfill.is_none() {
            let touches_existing = statement.tables.iter().any(|t| !created.contains(t));
            if touches_existing {
                findings.push(finding(
                    statement,
                    UNBATCHED_UPDATE,
                    format!(
                        "`{}` changes every matching row of {} in one statement, holding row locks (and, in a transaction with DDL, the table lock) until it ends.",
                        first_words(&statement.text),
                        statement.tables.join(", ")
                    ),
                    "move it to its own migration with `-- cutover:phase backfill` and `-- cutover:backfill table=<t> key=<id>`, which updates in short keyset batches and resumes after a crash.",
                ));
            }
        }
        if upper.starts_with("ALTER TABLE") || upper.starts_with("CREATE TABLE") {
            let has_json = upper
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|word| word == "JSON");
            if has_json {
                findings.push(finding(
                    statement,
                    JSON_COLUMN,
                    "a `json` column has no equality operator, so existing `SELECT DISTINCT` and `GROUP BY` queries on the table fail.".to_owned(),
                    "use `jsonb`.",
                ));
            }
        }
    }
    findings
}

fn first_words(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().take(4).collect();
    format!("{} ...", words.join(" "))
}

/// Every rule name `-- cutover:allow` accepts, for `cutover-migrate lint --rules`.
pub fn rule_names() -> Vec<String> {
    let mut names: Vec<String> = squawk_rules().map(|rule| rule.to_string()).collect();
    names.push(UNBATCHED_UPDATE.to_owned());
    names.push(JSON_COLUMN.to_owned());
    names.sort();
    names
}

fn squawk_rules() -> impl Iterator<Item = Rule> {
    Linter::with_rules(&[], STYLE_RULES).rules.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MigrationSet;

    fn lint_file(name: &str, sql: &str) -> Vec<Finding> {
        let set = MigrationSet::from_files([(format!("m/{name}"), sql.to_owned())]).unwrap();
        lint(&set.migrations()[0], 15, true, &LintPolicy::default())
    }

    #[test]
    fn a_plain_index_on_an_existing_table_is_refused_with_the_fix() {
        let findings = lint_file("0002_idx.up.sql", "CREATE INDEX idx_users_email ON users (email);");
        let finding = findings
            .iter()
            .find(|f| f.rule == "require-concurrent-index-creation")
            .unwrap();
        assert!(!finding.allowed);
        let text = finding.to_string();
        assert!(text.to_lowercase().contains("concurrently"), "{text}");
        assert!(
            text.contains("add `-- cutover:allow require-concurrent-index-creation`"),
            "{text}"
        );
    }

    #[test]
    fn allowed_rules_and_new_tables_pass() {
        let findings = lint_file(
            "0002_idx.up.sql",
            "-- cutover:allow require-concurrent-index-creation\nCREATE INDEX idx_users_email ON users (email);",
        );
        assert!(findings.iter().all(|f| f.allowed), "{findings:?}");
        let findings = lint_file(
            "0001_t.up.sql",
            "CREATE TABLE t (id bigint PRIMARY KEY, a text);\nCREATE INDEX t_a ON t (a);",
        );
        assert!(findings.iter().all(|f| f.allowed), "{findings:?}");
    }

    #[test]
    fn statements_on_tables_created_in_the_same_migration_are_not_findings() {
        let rules = |sql: &str| -> Vec<String> {
            lint_file("0004_new.up.sql", sql)
                .into_iter()
                .filter(|f| !f.allowed)
                .map(|f| f.rule)
                .collect()
        };
        let fresh = "CREATE TABLE events (a int, meta json);\n\
                     ALTER TABLE events ADD COLUMN id serial PRIMARY KEY;\n\
                     ALTER TABLE events ALTER COLUMN a SET NOT NULL;\n\
                     UPDATE events SET a = 1;";
        assert_eq!(rules(fresh), Vec::<String>::new());
        // The same statements on an existing table are findings.
        let existing = "ALTER TABLE users ADD COLUMN id2 serial PRIMARY KEY;\nALTER TABLE users ADD COLUMN meta json;";
        let found = rules(existing);
        assert!(
            found.contains(&"adding-serial-primary-key-field".to_owned()),
            "{found:?}"
        );
        assert!(found.contains(&"json-column".to_owned()), "{found:?}");
        // A foreign key from a new table still locks the table it references: never dropped.
        let foreign = statements::split(
            "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint);\n\
             ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id);",
        )
        .unwrap();
        assert!(!only_touches_new_tables(&foreign, 2));
        assert!(only_touches_new_tables(&foreign, 1));
        let found = rules("ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id);");
        assert!(found.contains(&"adding-foreign-key-constraint".to_owned()), "{found:?}");
    }

    #[test]
    fn the_policy_allows_rules_by_range_and_skips_history() {
        let set = MigrationSet::from_files([(
            "m/0140_drop.up.sql".to_owned(),
            "ALTER TABLE users DROP COLUMN legacy;".to_owned(),
        )])
        .unwrap();
        let migration = &set.migrations()[0];
        let refused = |policy: &LintPolicy| lint(migration, 15, true, policy).into_iter().any(|f| !f.allowed);
        assert!(refused(&LintPolicy::default()));
        assert!(!refused(
            &LintPolicy::default().allow_spec("ban-drop-column@136..=140").unwrap()
        ));
        assert!(refused(
            &LintPolicy::default().allow_spec("ban-drop-column@141..").unwrap()
        ));
        assert!(!refused(&LintPolicy::default().allow("ban-drop-column")));
        assert!(lint(migration, 15, true, &LintPolicy::default().baseline(140)).is_empty());
        assert!(!lint(migration, 15, true, &LintPolicy::default().baseline(139)).is_empty());
    }

    #[test]
    fn our_own_rules_catch_unbatched_updates_and_json_columns() {
        let findings = lint_file(
            "0003_x.up.sql",
            "ALTER TABLE users ADD COLUMN meta json;\nUPDATE users SET meta = '{}';",
        );
        let rules: Vec<&str> = findings.iter().map(|f| f.rule.as_str()).collect();
        assert!(rules.contains(&"unbatched-update"), "{rules:?}");
        assert!(rules.contains(&"json-column"), "{rules:?}");
        assert!(is_known_rule("unbatched-update") && is_known_rule("adding-field-with-default"));
        assert!(!is_known_rule("nope"));
        assert!(rule_names().contains(&"ban-drop-column".to_owned()));
    }
}
