//! What the lint reports, on any backend.

/// One problem the lint found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The migration.
    pub version: i64,
    /// Where it came from.
    pub origin: String,
    /// 1-based line in the file.
    pub line: usize,
    /// The rule's name, as `-- cutover:allow` takes it.
    pub rule: String,
    /// What is wrong.
    pub message: String,
    /// The safe alternative.
    pub help: Option<String>,
    /// Whether the migration allows it.
    pub allowed: bool,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}: {}", self.origin, self.line, self.rule, self.message)?;
        if let Some(help) = &self.help {
            write!(f, " Instead: {help}")?;
        }
        if !self.allowed {
            write!(
                f,
                " (to accept it, add `-- cutover:allow {}` to the file's header)",
                self.rule
            )?;
        }
        Ok(())
    }
}
