//! Splitting SQL into statements with a real PostgreSQL parser (dollar quoting, `BEGIN
//! ATOMIC` bodies and comments are handled), and recognising the statements that cannot run
//! inside a transaction.

use squawk_syntax::{SourceFile, SyntaxKind, SyntaxToken, ast::AstNode};

/// One SQL statement of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    /// The statement's text, as written (without the text between statements).
    pub(crate) text: String,
    /// 1-based line where it starts in the file.
    pub(crate) line: usize,
    /// Why it cannot run inside a transaction, if it cannot.
    pub(crate) outside_transaction: Option<&'static str>,
    /// For `CREATE INDEX CONCURRENTLY`: the index name, needed to detect an INVALID leftover.
    pub(crate) concurrent_index: Option<ConcurrentIndex>,
    /// Tables the statement locks (for the pre-flight check of long transactions).
    pub(crate) tables: Vec<String>,
    /// For `ALTER TYPE ... ADD VALUE`: the value added, as written (`'archived'`). Before
    /// PostgreSQL 12 the statement cannot run in a transaction; from 12 on it can, but the new
    /// value cannot be used before the transaction commits.
    pub(crate) added_enum_value: Option<String>,
    /// For `CREATE TABLE`: the table it creates.
    pub(crate) created_table: Option<String>,
}

/// A concurrent index build and what it builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConcurrentIndex {
    /// The index name (`None` when the statement does not name it, which the runner refuses).
    pub(crate) name: Option<String>,
    /// Whether the statement says `IF NOT EXISTS`.
    pub(crate) if_not_exists: bool,
}

fn line_of(sql: &str, offset: usize) -> usize {
    sql[..offset.min(sql.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Split `sql` into statements. Fails with the line of the first syntax error.
pub(crate) fn split(sql: &str) -> Result<Vec<Statement>, (usize, String)> {
    let parse = SourceFile::parse(sql);
    if let Some(error) = parse.errors().first() {
        let offset = usize::from(error.range().start());
        return Err((line_of(sql, offset), error.message().to_owned()));
    }
    let mut statements = Vec::new();
    for stmt in parse.tree().stmts() {
        let syntax = stmt.syntax();
        let range = syntax.text_range();
        let (start, end) = (usize::from(range.start()), usize::from(range.end()));
        let text = sql[start..end].trim().to_owned();
        if text.is_empty() || text == ";" {
            continue;
        }
        let tokens: Vec<SyntaxToken> = syntax
            .descendants_with_tokens()
            .filter_map(|element| element.into_token())
            .filter(|token| !token.kind().is_trivia())
            .collect();
        let kind = syntax.kind();
        let has = |wanted: SyntaxKind| tokens.iter().any(|token| token.kind() == wanted);
        let has_node = |wanted: SyntaxKind| syntax.descendants().any(|node| node.kind() == wanted);
        let concurrently = has(SyntaxKind::CONCURRENTLY_KW);
        let outside_transaction = match kind {
            SyntaxKind::CREATE_INDEX if concurrently => Some("CREATE INDEX CONCURRENTLY"),
            SyntaxKind::DROP_INDEX if concurrently => Some("DROP INDEX CONCURRENTLY"),
            SyntaxKind::REINDEX if concurrently => Some("REINDEX CONCURRENTLY"),
            SyntaxKind::REFRESH if concurrently => Some("REFRESH MATERIALIZED VIEW CONCURRENTLY"),
            SyntaxKind::ALTER_TABLE if concurrently && has_node(SyntaxKind::DETACH_PARTITION) => {
                Some("DETACH PARTITION CONCURRENTLY")
            }
            // `ALTER TYPE ... ADD VALUE` depends on the server's version: see `added_enum_value`.
            SyntaxKind::VACUUM => Some("VACUUM"),
            SyntaxKind::CREATE_DATABASE => Some("CREATE DATABASE"),
            SyntaxKind::DROP_DATABASE => Some("DROP DATABASE"),
            SyntaxKind::ALTER_SYSTEM => Some("ALTER SYSTEM"),
            _ => None,
        };
        let words: Vec<(SyntaxKind, String)> = tokens.iter().map(|t| (t.kind(), t.text().to_owned())).collect();
        let concurrent_index = (kind == SyntaxKind::CREATE_INDEX && concurrently).then(|| ConcurrentIndex {
            name: index_name(&words),
            if_not_exists: has(SyntaxKind::EXISTS_KW),
        });
        let added_enum_value = (kind == SyntaxKind::ALTER_TYPE && has_node(SyntaxKind::ADD_VALUE))
            .then(|| {
                words
                    .iter()
                    .skip_while(|(kind, _)| *kind != SyntaxKind::VALUE_KW)
                    .find(|(_, text)| text.starts_with('\''))
                    .map(|(_, text)| text.clone())
            })
            .flatten();
        statements.push(Statement {
            line: line_of(sql, start),
            text,
            outside_transaction,
            concurrent_index,
            tables: tables(kind, &words),
            added_enum_value,
            created_table: (kind == SyntaxKind::CREATE_TABLE)
                .then(|| table_after(&words, SyntaxKind::TABLE_KW))
                .flatten(),
        });
    }
    Ok(statements)
}

/// A possibly schema-qualified name starting at `from`: `name` or `schema.name`.
fn name_at(words: &[(SyntaxKind, String)], from: usize) -> Option<String> {
    let (kind, first) = words.get(from)?;
    if is_punctuation(*kind) {
        return None;
    }
    let mut name = unquote(first);
    let mut at = from + 1;
    while words.get(at).is_some_and(|(k, _)| *k == SyntaxKind::DOT) {
        let (_, part) = words.get(at + 1)?;
        name.push('.');
        name.push_str(&unquote(part));
        at += 2;
    }
    Some(name)
}

fn is_punctuation(kind: SyntaxKind) -> bool {
    matches!(
        kind,
        SyntaxKind::L_PAREN | SyntaxKind::R_PAREN | SyntaxKind::SEMICOLON | SyntaxKind::COMMA | SyntaxKind::DOT
    )
}

fn unquote(text: &str) -> String {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .map_or_else(|| text.to_owned(), |t| t.replace("\"\"", "\""))
}

/// `CREATE [UNIQUE] INDEX [CONCURRENTLY] [IF NOT EXISTS] name ON ...`
fn index_name(words: &[(SyntaxKind, String)]) -> Option<String> {
    let mut at = words.iter().position(|(k, _)| *k == SyntaxKind::INDEX_KW)? + 1;
    while words.get(at).is_some_and(|(k, _)| {
        matches!(
            k,
            SyntaxKind::CONCURRENTLY_KW | SyntaxKind::IF_KW | SyntaxKind::NOT_KW | SyntaxKind::EXISTS_KW
        )
    }) {
        at += 1;
    }
    if words.get(at).is_some_and(|(k, _)| *k == SyntaxKind::ON_KW) {
        return None;
    }
    name_at(words, at)
}

/// The table after `keyword`, skipping `IF EXISTS`, `ONLY` and `*`.
fn table_after(words: &[(SyntaxKind, String)], keyword: SyntaxKind) -> Option<String> {
    let mut at = words.iter().position(|(k, _)| *k == keyword)? + 1;
    while words.get(at).is_some_and(|(k, _)| {
        matches!(
            k,
            SyntaxKind::IF_KW | SyntaxKind::NOT_KW | SyntaxKind::EXISTS_KW | SyntaxKind::ONLY_KW | SyntaxKind::TABLE_KW
        )
    }) {
        at += 1;
    }
    name_at(words, at)
}

fn tables(kind: SyntaxKind, words: &[(SyntaxKind, String)]) -> Vec<String> {
    let table = match kind {
        SyntaxKind::ALTER_TABLE => table_after(words, SyntaxKind::TABLE_KW),
        SyntaxKind::CREATE_INDEX => table_after(words, SyntaxKind::ON_KW),
        SyntaxKind::UPDATE => table_after(words, SyntaxKind::UPDATE_KW),
        SyntaxKind::DELETE => table_after(words, SyntaxKind::FROM_KW),
        SyntaxKind::INSERT => table_after(words, SyntaxKind::INTO_KW),
        SyntaxKind::DROP_TABLE | SyntaxKind::TRUNCATE => table_after(words, SyntaxKind::TABLE_KW),
        _ => None,
    };
    table.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_with_a_real_parser() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$ LANGUAGE sql;\n\
                   -- a comment; with a semicolon\n\
                   INSERT INTO t VALUES ('a;b');\n\
                   CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_t_a ON public.t (a);";
        let statements = split(sql).unwrap();
        assert_eq!(statements.len(), 3, "{statements:#?}");
        assert!(statements[0].text.ends_with("LANGUAGE sql;"));
        assert_eq!(statements[1].text, "INSERT INTO t VALUES ('a;b');");
        assert_eq!(statements[1].line, 3);
        assert_eq!(statements[2].outside_transaction, Some("CREATE INDEX CONCURRENTLY"));
        assert_eq!(
            statements[2].concurrent_index,
            Some(ConcurrentIndex {
                name: Some("idx_t_a".into()),
                if_not_exists: true
            })
        );
        assert_eq!(statements[2].tables, ["public.t"]);
    }

    #[test]
    fn recognises_what_cannot_run_in_a_transaction() {
        let kinds: Vec<_> = split(
            "DROP INDEX CONCURRENTLY IF EXISTS i;\nREINDEX INDEX CONCURRENTLY i;\nALTER TYPE s ADD VALUE IF NOT EXISTS 'x' BEFORE 'y';\n\
             CREATE INDEX i2 ON t (a);\nALTER TABLE t ADD COLUMN c int;\nVACUUM t;",
        )
        .unwrap()
        .into_iter()
        .map(|s| s.outside_transaction.or(s.added_enum_value.map(|v| if v == "'x'" { "added 'x'" } else { "other" })))
        .collect();
        assert_eq!(
            kinds,
            [
                Some("DROP INDEX CONCURRENTLY"),
                Some("REINDEX CONCURRENTLY"),
                Some("added 'x'"),
                None,
                None,
                Some("VACUUM")
            ]
        );
    }

    #[test]
    fn unnamed_concurrent_indexes_and_syntax_errors_are_reported() {
        let statements = split("CREATE INDEX CONCURRENTLY ON t (a);").unwrap();
        assert_eq!(statements[0].concurrent_index.as_ref().unwrap().name, None);
        let (line, message) = split("SELECT 1;\nCREATE TABLEE t (a int);").unwrap_err();
        assert_eq!(line, 2, "{message}");
    }

    #[test]
    fn finds_the_tables_a_statement_locks() {
        let statements =
            split("ALTER TABLE IF EXISTS ONLY \"Users\" ADD COLUMN x int;\nUPDATE users SET a = 1;").unwrap();
        assert_eq!(statements[0].tables, ["Users"]);
        assert_eq!(statements[1].tables, ["users"]);
        let created =
            split("CREATE TABLE IF NOT EXISTS app.events (id bigint);\nCREATE TABLE \"Notes\" (id int);").unwrap();
        assert_eq!(created[0].created_table.as_deref(), Some("app.events"));
        assert_eq!(created[1].created_table.as_deref(), Some("Notes"));
    }
}
