//! Reading the version a request asks for, and deciding what to serve.

use std::{borrow::Cow, time::SystemTime};

use http::{HeaderMap, Uri, uri::PathAndQuery};

use crate::{ApiVersion, Conflict, Resolution, Source, VersionError, VersionSet, layer::Versioning};

/// The outcome of negotiation, in every request's extensions (and an axum extractor).
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub(crate) version: ApiVersion,
    pub(crate) index: usize,
    pub(crate) requested: Option<ApiVersion>,
    pub(crate) source: Option<Source>,
    pub(crate) head: bool,
    /// The layer's versions and changes, for extractors (one extension instead of two).
    pub(crate) context: Option<Versioning>,
}

impl PartialEq for Negotiated {
    fn eq(&self, other: &Self) -> bool {
        (&self.version, &self.requested, self.source, self.head)
            == (&other.version, &other.requested, other.source, other.head)
    }
}

impl Eq for Negotiated {}

impl Negotiated {
    /// The version being served.
    pub fn version(&self) -> &ApiVersion {
        &self.version
    }

    /// The version the request named, when it named one (it differs from the served version
    /// only under [`Resolution::Compatible`]).
    pub fn requested(&self) -> Option<&ApiVersion> {
        self.requested.as_ref()
    }

    /// Where the version came from; `None` when the default was used.
    pub fn source(&self) -> Option<Source> {
        self.source
    }

    /// Whether the served version is the newest one (no transformation needed).
    pub fn is_head(&self) -> bool {
        self.head
    }

    /// The versions and changes of the layer that negotiated, when it was a [`VersionLayer`](crate::VersionLayer).
    pub fn versioning(&self) -> Option<&Versioning> {
        self.context.as_ref()
    }
}

/// A version found in the request, before validation.
struct Candidate<'a> {
    source: Source,
    text: Cow<'a, str>,
}

/// Decide the version for a request. On success also returns the request's path with the
/// version segment removed, when the path carried one.
pub(crate) fn negotiate(
    set: &VersionSet,
    headers: &HeaderMap,
    uri: &Uri,
    now: impl FnOnce() -> SystemTime,
) -> Result<(Negotiated, Option<Uri>), VersionError> {
    let inner = &set.inner;
    // The first version named wins (or conflicts); only disagreeing ones are collected, so
    // the usual request (one source, or none) allocates nothing.
    let mut first: Option<(Source, ApiVersion)> = None;
    let mut others: Vec<(Source, ApiVersion)> = Vec::new();
    let mut stripped = None;
    let mut considered = 0;
    let mut consider = |candidate: Candidate<'_>| -> Result<(), VersionError> {
        considered += 1;
        if considered > inner.max_candidates {
            return Err(VersionError::TooMany {
                limit: inner.max_candidates,
            });
        }
        let version = candidate
            .text
            .parse::<ApiVersion>()
            .map_err(|error| VersionError::Malformed {
                location: candidate.source,
                requested: error.input().to_owned(),
            })?;
        match &first {
            None => first = Some((candidate.source, version)),
            Some((_, chosen)) if *chosen == version => {}
            Some(_) => {
                if !others.iter().any(|(_, seen)| *seen == version) {
                    others.push((candidate.source, version));
                }
            }
        }
        Ok(())
    };
    for &source in &inner.sources {
        match source {
            Source::Header => {
                for value in headers.get_all(&inner.header) {
                    if value.len() > inner.max_source_len {
                        return Err(VersionError::TooLong {
                            location: source,
                            limit: inner.max_source_len,
                        });
                    }
                    match value.to_str() {
                        Ok(text) => {
                            for part in text.split(',') {
                                consider(Candidate {
                                    source,
                                    text: Cow::Borrowed(part.trim()),
                                })?;
                            }
                        }
                        // Not visible ASCII: certainly not a version; report it as malformed.
                        Err(_) => consider(Candidate {
                            source,
                            text: Cow::Owned(String::from_utf8_lossy(value.as_bytes()).into_owned()),
                        })?,
                    }
                }
            }
            Source::Path => {
                if let Some((candidate, rest)) = from_path(set, uri) {
                    stripped = Some(rest);
                    consider(candidate)?;
                }
            }
            Source::Query => {
                if let Some(query) = uri.query() {
                    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                        if key == inner.query_param.as_str() {
                            if value.len() > inner.max_source_len {
                                return Err(VersionError::TooLong {
                                    location: source,
                                    limit: inner.max_source_len,
                                });
                            }
                            consider(Candidate { source, text: value })?;
                        }
                    }
                }
            }
            Source::MediaType => {
                for candidate in from_media_type(headers) {
                    consider(candidate)?;
                }
            }
        }
    }
    if let Some(chosen) = first.as_ref().filter(|_| !others.is_empty()) {
        match inner.conflict {
            Conflict::Reject => {
                let mut candidates = vec![chosen.clone()];
                candidates.append(&mut others);
                return Err(VersionError::Ambiguous { candidates });
            }
            Conflict::FirstWins => {
                tracing::debug!(chosen = %chosen.1, from = %chosen.0, others = others.len(), "request names several API versions; the first source wins");
            }
        }
    }
    let (requested, source) = match first {
        Some((source, version)) => (Some(version), Some(source)),
        None => (None, None),
    };
    let index = match &requested {
        None => inner.default,
        Some(version) => match (set.index_of(version), inner.resolution) {
            (Some(index), _) => index,
            (None, Resolution::Compatible) => {
                set.compatible_index(version).ok_or_else(|| VersionError::Unsupported {
                    requested: version.clone(),
                })?
            }
            (None, Resolution::Exact) => {
                return Err(VersionError::Unsupported {
                    requested: version.clone(),
                });
            }
        },
    };
    let info = set.info(index);
    // Reading the clock costs more than the rest of negotiation: only for versions with a sunset.
    if info.sunset.is_some() && info.is_retired(now()) {
        return Err(VersionError::Retired {
            requested: info.version.clone(),
            retired_on: info.sunset.map(httpdate::fmt_http_date).unwrap_or_default(),
        });
    }
    let negotiated = Negotiated {
        version: info.version.clone(),
        index,
        requested,
        source,
        head: index == inner.versions.len() - 1,
        context: None,
    };
    Ok((negotiated, stripped))
}

/// `/api/v1.2/users` → (`1.2`, `/api/users`). Only a segment that starts with `v` and a digit
/// is a version segment: `/api/vendors` is an ordinary route.
fn from_path<'a>(set: &VersionSet, uri: &'a Uri) -> Option<(Candidate<'a>, Uri)> {
    let path = uri.path();
    let rest = path.strip_prefix(set.inner.path_prefix.as_str())?;
    let rest = rest.strip_prefix('/')?;
    let bytes = rest.as_bytes();
    if bytes.len() < 2 || !matches!(bytes[0], b'v' | b'V') || !bytes[1].is_ascii_digit() {
        return None;
    }
    let (segment, tail) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, ""),
    };
    let mut new_path = format!("{}{tail}", set.inner.path_prefix);
    if new_path.is_empty() {
        new_path.push('/');
    }
    if let Some(query) = uri.query() {
        new_path.push('?');
        new_path.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(new_path).ok()?);
    let stripped = Uri::from_parts(parts).ok()?;
    Some((
        Candidate {
            source: Source::Path,
            text: Cow::Borrowed(segment),
        },
        stripped,
    ))
}

/// `Accept: application/json; version=1.2`.
fn from_media_type(headers: &HeaderMap) -> Vec<Candidate<'_>> {
    let mut found = Vec::new();
    for value in headers.get_all(http::header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for range in text.split(',') {
            for parameter in range.split(';').skip(1) {
                if let Some((key, value)) = parameter.split_once('=')
                    && key.trim().eq_ignore_ascii_case("version")
                {
                    found.push(Candidate {
                        source: Source::MediaType,
                        text: Cow::Owned(value.trim().trim_matches('"').to_owned()),
                    });
                }
            }
        }
    }
    found
}
