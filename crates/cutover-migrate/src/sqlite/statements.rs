//! Splitting a SQLite migration into statements, so an error names the line of the statement
//! that failed. SQLite's own rules: `'...'` strings, `"..."`, `` `...` `` and `[...]`
//! identifiers, `--` and `/* */` comments, and trigger bodies (`BEGIN ... END`, with `CASE ...
//! END` inside) whose semicolons do not end the statement.

/// One statement and the 1-based line where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement<'a> {
    pub(crate) line: usize,
    pub(crate) text: &'a str,
}

/// The statements of `sql`, in order; text after the last `;` is a statement too.
pub(crate) fn split(sql: &str) -> Vec<Statement<'_>> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Words of the current statement, upper-cased, as far as needed to know a trigger.
    let mut first_words: Vec<String> = Vec::new();
    let mut depth = 0usize;
    let mut in_body = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' | b'`' | b'[' => {
                let close = if bytes[i] == b'[' { b']' } else { bytes[i] };
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == close {
                        // A doubled quote is an escaped one.
                        if close != b']' && bytes.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b';' if depth == 0 => {
                push(sql, start, i + 1, &mut statements);
                start = i + 1;
                i += 1;
                first_words.clear();
                in_body = false;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let word_start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = sql[word_start..i].to_ascii_uppercase();
                let is_trigger = first_words.first().is_some_and(|w| w == "CREATE")
                    && first_words.iter().take(3).any(|w| w == "TRIGGER");
                if is_trigger {
                    match word.as_str() {
                        "BEGIN" | "CASE" => {
                            in_body |= word == "BEGIN";
                            depth += 1;
                        }
                        "END" if in_body => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                }
                if first_words.len() < 3 {
                    first_words.push(word);
                }
            }
            _ => i += 1,
        }
    }
    push(sql, start, sql.len(), &mut statements);
    statements
}

fn push<'a>(sql: &'a str, start: usize, end: usize, statements: &mut Vec<Statement<'a>>) {
    let end = end.min(sql.len());
    let text = &sql[start..end];
    // Skip what only holds comments and whitespace.
    let meaningful = text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with("--") && line != ";"
    });
    if !meaningful {
        return;
    }
    // Leading `--` comments belong to no statement: the line is the statement's own.
    let mut rest = text.trim_start();
    while let Some(comment) = rest.strip_prefix("--") {
        rest = comment.split_once('\n').map_or("", |(_, after)| after).trim_start();
    }
    let offset = start + (text.len() - rest.len());
    let line = sql[..offset].bytes().filter(|b| *b == b'\n').count() + 1;
    statements.push(Statement {
        line,
        text: rest.trim_end(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(sql: &str) -> Vec<(usize, &str)> {
        split(sql).into_iter().map(|s| (s.line, s.text)).collect()
    }

    #[test]
    fn splits_on_semicolons_outside_strings_comments_and_trigger_bodies() {
        let sql = "-- header\nCREATE TABLE t (a TEXT DEFAULT 'x;y', \"b;\" INT);\n\n\
                   /* a; comment */ INSERT INTO t VALUES ('it''s; fine', 1);\n\
                   CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n  UPDATE t SET a = CASE WHEN a = 'x' THEN 'y' END;\n  DELETE FROM t WHERE 0;\nEND;\n\
                   SELECT [odd;name] FROM t";
        let found = lines(sql);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert_eq!(found[0].0, 2);
        assert_eq!(
            found[1],
            (4, "/* a; comment */ INSERT INTO t VALUES ('it''s; fine', 1);")
        );
        assert_eq!(found[2].0, 5);
        assert!(found[2].1.ends_with("END;"), "{}", found[2].1);
        assert_eq!(found[3], (9, "SELECT [odd;name] FROM t"));
    }

    #[test]
    fn comments_alone_are_not_statements() {
        assert!(split("-- nothing\n\n-- at all\n").is_empty());
        assert_eq!(lines("SELECT 1; -- done\n"), [(1, "SELECT 1;")]);
    }
}
