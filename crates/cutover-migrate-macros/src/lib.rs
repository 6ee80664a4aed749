//! `embed_migrations!`: the migration files of a directory (`.sql`, or `.json` for MongoDB, in
//! the layouts `cutover_migrate::MigrationSet::from_dir` reads), embedded with `include_str!` so
//! the compiler tracks them. Use it through `cutover_migrate::embed_migrations!`.

use proc_macro::{TokenStream, TokenTree};

/// `embed_migrations!("migrations/postgres")`, relative to the calling crate's manifest
/// directory, expands to `::cutover_migrate::MigrationSet::from_files(vec![...])`, or to
/// `::cutover_migrate::mongo::MongoMigrationSet::from_files(vec![...])` for a directory of
/// `.json` migrations.
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(tokens) => tokens,
        Err(message) => format!("compile_error!({message:?})").parse().unwrap_or_default(),
    }
}

/// The path of `cutover_migrate` as the caller reaches it: `cutover_migrate::embed_migrations!`
/// forwards `$crate, "dir"` (so the expansion also works through `cutover::migrate`); called
/// directly with only the literal, `::cutover_migrate`.
fn split_crate_path(input: TokenStream) -> (TokenStream, TokenStream) {
    let tokens: Vec<TokenTree> = input.into_iter().collect();
    match tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
    {
        Some(comma) => (
            tokens[..comma].iter().cloned().collect(),
            tokens[comma + 1..].iter().cloned().collect(),
        ),
        None => (
            "::cutover_migrate".parse().unwrap_or_default(),
            tokens.into_iter().collect(),
        ),
    }
}

fn literal(input: TokenStream) -> Result<String, String> {
    let mut tokens = input.into_iter();
    let token = match tokens.next() {
        // A literal forwarded through `macro_rules!` arrives wrapped in an invisible group.
        Some(TokenTree::Group(group)) => group.stream().into_iter().next(),
        other => other,
    };
    let Some(TokenTree::Literal(literal)) = token else {
        return Err("embed_migrations! takes one string literal: the directory, relative to Cargo.toml".to_owned());
    };
    let text = literal.to_string();
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .map(str::to_owned)
        .ok_or_else(|| "embed_migrations! takes a plain string literal".to_owned())
}

fn expand(input: TokenStream) -> Result<TokenStream, String> {
    let (krate, input) = split_crate_path(input);
    let relative = literal(input)?;
    let manifest = std::env::var("CARGO_MANIFEST_DIR").map_err(|_| "CARGO_MANIFEST_DIR is not set".to_owned())?;
    let dir = std::path::Path::new(&manifest).join(&relative);
    let sql = files(&dir, "sql")?;
    let json = files(&dir, "json")?;
    let (set, files) = match (sql.is_empty(), json.is_empty()) {
        (false, false) => {
            return Err(format!(
                "{} holds both .sql and .json migrations; keep SQL and MongoDB migrations in separate directories",
                dir.display()
            ));
        }
        (true, false) => ("::mongo::MongoMigrationSet", json),
        _ => ("::MigrationSet", sql),
    };
    let mut pairs = String::new();
    for path in files {
        let inside = path
            .strip_prefix(&dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let shown = format!("embedded:{relative}/{inside}");
        pairs.push_str(&format!(
            "(::std::string::String::from({shown:?}), ::std::string::String::from(include_str!({:?}))),",
            path.display().to_string()
        ));
    }
    let call: TokenStream = format!("{set}::from_files(::std::vec![{pairs}])")
        .parse()
        .map_err(|error| format!("embed_migrations!: {error}"))?;
    let mut expansion = krate;
    expansion.extend(call);
    Ok(expansion)
}

/// The files of `dir` ending in `.{extension}`, and the `up`, `down` and `metadata.toml` files of
/// its subdirectories (diesel's layout), sorted.
fn files(dir: &std::path::Path, extension: &str) -> Result<Vec<std::path::PathBuf>, String> {
    let list = |dir: &std::path::Path| -> Result<Vec<std::path::PathBuf>, String> {
        let entries = std::fs::read_dir(dir).map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
        Ok(entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
    };
    let has_extension = |path: &std::path::Path| path.extension().and_then(|e| e.to_str()) == Some(extension);
    let mut found = Vec::new();
    for path in list(dir)? {
        if path.is_dir() {
            let inner: Vec<_> = list(&path)?
                .into_iter()
                .filter(|p| {
                    let stem = p.file_stem().and_then(|s| s.to_str());
                    has_extension(p) && matches!(stem, Some("up" | "down"))
                })
                .collect();
            if !inner.is_empty() {
                found.extend(inner);
                let metadata = path.join("metadata.toml");
                if metadata.is_file() {
                    found.push(metadata);
                }
            }
        } else if has_extension(&path) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}
