//! Reading the fields of a stored document (the ledger's, the instance registry's), tolerant of
//! how other drivers wrote them.

use mongodb::bson::{Bson, Document};

/// A string field.
pub(crate) fn text(document: &Document, key: &str) -> Option<String> {
    document.get_str(key).ok().map(str::to_owned)
}

/// A date field, as RFC 3339.
pub(crate) fn time(document: &Document, key: &str) -> Option<String> {
    document
        .get_datetime(key)
        .ok()
        .and_then(|t| t.try_to_rfc3339_string().ok())
}

/// A number, whichever integer (or double) type it was written as.
pub(crate) fn number(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

/// A number field.
pub(crate) fn integer(document: &Document, key: &str) -> Option<i64> {
    number(document.get(key)?)
}
