//! `embed_migrations!`: the `.sql` files of a directory, embedded with `include_str!` so the
//! compiler tracks them. Use it through `cutover_migrate::embed_migrations!`.

use proc_macro::{TokenStream, TokenTree};

/// `embed_migrations!("migrations/postgres")`, relative to the calling crate's manifest
/// directory, expands to `::cutover_migrate::MigrationSet::from_files(vec![...])`.
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(tokens) => tokens,
        Err(message) => format!("compile_error!({message:?})").parse().unwrap_or_default(),
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
    let relative = literal(input)?;
    let manifest = std::env::var("CARGO_MANIFEST_DIR").map_err(|_| "CARGO_MANIFEST_DIR is not set".to_owned())?;
    let dir = std::path::Path::new(&manifest).join(&relative);
    let entries = std::fs::read_dir(&dir).map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().and_then(|e| e.to_str()) == Some("sql"))
        .collect();
    files.sort();
    let mut pairs = String::new();
    for path in files {
        let shown = format!(
            "embedded:{relative}/{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        );
        pairs.push_str(&format!(
            "(::std::string::String::from({shown:?}), ::std::string::String::from(include_str!({:?}))),",
            path.display().to_string()
        ));
    }
    format!("::cutover_migrate::MigrationSet::from_files(::std::vec![{pairs}])")
        .parse()
        .map_err(|error| format!("embed_migrations!: {error}"))
}
