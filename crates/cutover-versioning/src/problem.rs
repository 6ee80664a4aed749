//! RFC 9457 problem details for every way a version request can fail.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::{ApiVersion, Source};

/// Why a request's version could not be served. Rendered as a `400 Bad Request` with an
/// `application/problem+json` body that lists the supported versions, so a client can correct
/// itself. Never a silent fallback to the default version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The text in a source is not a version at all.
    #[error("the {location} names `{requested}`, which is not an API version; use e.g. `1.2`")]
    Malformed {
        /// Where it came from.
        location: Source,
        /// The text received (truncated).
        requested: String,
    },
    /// A well-formed version this API does not serve.
    #[error("API version {requested} is not supported")]
    Unsupported {
        /// The version asked for.
        requested: ApiVersion,
    },
    /// A version past its sunset date.
    #[error("API version {requested} was retired on {retired_on}")]
    Retired {
        /// The version asked for.
        requested: ApiVersion,
        /// Its sunset date (HTTP date).
        retired_on: String,
    },
    /// Sources disagree and the set rejects conflicts.
    #[error("the request names different API versions: {}", describe(.candidates))]
    Ambiguous {
        /// Every (source, version) found.
        candidates: Vec<(Source, ApiVersion)>,
    },
    /// A source holds more text than any version needs (see
    /// [`VersionSetBuilder::max_source_length`](crate::VersionSetBuilder::max_source_length)).
    #[error("the {location} holds more than {limit} bytes; an API version is a few characters, e.g. `1.2`")]
    TooLong {
        /// Where it came from.
        location: Source,
        /// The limit.
        limit: usize,
    },
    /// The request names more versions than allowed (see
    /// [`VersionSetBuilder::max_versions_per_request`](crate::VersionSetBuilder::max_versions_per_request)).
    #[error("the request names more than {limit} API versions; name one")]
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// The endpoint does not exist in the negotiated version.
    #[error("{detail}")]
    OutOfRange {
        /// The negotiated version.
        requested: ApiVersion,
        /// Which bound it breaks.
        detail: String,
    },
}

fn describe(candidates: &[(Source, ApiVersion)]) -> String {
    candidates
        .iter()
        .map(|(source, version)| format!("{version} ({source})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested: Option<String>,
    supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<Candidate>,
}

#[derive(Serialize)]
struct Candidate {
    source: &'static str,
    version: String,
}

impl VersionError {
    /// The problem type URI.
    pub fn type_uri(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "urn:cutover:problem:malformed-api-version",
            Self::Unsupported { .. } => "urn:cutover:problem:unsupported-api-version",
            Self::Retired { .. } => "urn:cutover:problem:retired-api-version",
            Self::Ambiguous { .. } => "urn:cutover:problem:ambiguous-api-version",
            Self::OutOfRange { .. } => "urn:cutover:problem:api-version-out-of-range",
            Self::TooLong { .. } | Self::TooMany { .. } => "urn:cutover:problem:api-version-request-too-large",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "Malformed API version",
            Self::Unsupported { .. } => "Unsupported API version",
            Self::Retired { .. } => "Retired API version",
            Self::Ambiguous { .. } => "Ambiguous API version",
            Self::OutOfRange { .. } => "Endpoint not available in this API version",
            Self::TooLong { .. } | Self::TooMany { .. } => "Malformed API version",
        }
    }

    fn requested(&self) -> Option<String> {
        match self {
            Self::Malformed { requested, .. } => Some(requested.clone()),
            Self::Unsupported { requested } | Self::Retired { requested, .. } | Self::OutOfRange { requested, .. } => {
                Some(requested.to_string())
            }
            Self::Ambiguous { .. } | Self::TooLong { .. } | Self::TooMany { .. } => None,
        }
    }

    /// The problem+json response, listing `supported`.
    pub fn to_response<B: From<Bytes>>(&self, supported: impl Iterator<Item = impl ToString>) -> Response<B> {
        let problem = Problem {
            kind: self.type_uri(),
            title: self.title(),
            status: StatusCode::BAD_REQUEST.as_u16(),
            detail: self.to_string(),
            requested: self.requested(),
            supported: supported.map(|v| v.to_string()).collect(),
            candidates: match self {
                Self::Ambiguous { candidates } => candidates
                    .iter()
                    .map(|(source, version)| Candidate {
                        source: source.as_str(),
                        version: version.to_string(),
                    })
                    .collect(),
                _ => Vec::new(),
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = Response::new(B::from(Bytes::from(body)));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
