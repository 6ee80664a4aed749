//! The versions an API supports, and how requests choose among them.

use std::{
    collections::BTreeSet,
    fmt,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use http::{HeaderName, HeaderValue};

use crate::{ApiVersion, ParseVersionError};

/// Where a request may name its version, in the order they are consulted by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A header, `Accept-Version: 1.2` by default.
    Header,
    /// A path segment after the prefix: `/api/v1.2/users`. The segment is removed before
    /// routing, so the route is declared once as `/api/users`.
    Path,
    /// A query parameter, `?version=1.2` by default.
    Query,
    /// A media-type parameter: `Accept: application/json; version=1.2`. Off by default.
    MediaType,
}

impl Source {
    /// `"header"`, `"path"`, `"query"` or `"media type"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Path => "path",
            Self::Query => "query",
            Self::MediaType => "media type",
        }
    }
}

/// What to do with a request for a version that is not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    /// Reject it with 400 (the default, and the original brief's behaviour).
    #[default]
    Exact,
    /// Serve the highest supported version with the same major number that is not newer than
    /// the one asked for: `1.4` is served as `1.3`; `2.0` and `0.9` are still rejected.
    Compatible,
}

/// What to do when a request names different versions in different places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conflict {
    /// The first source in precedence order wins; the disagreement is logged (default).
    #[default]
    FirstWins,
    /// Reject the request with 400: it is ambiguous.
    Reject,
}

/// One supported version and what clients must be told about it.
#[derive(Debug, Clone)]
pub(crate) struct VersionInfo {
    pub(crate) version: ApiVersion,
    pub(crate) deprecated: Option<SystemTime>,
    pub(crate) sunset: Option<SystemTime>,
    pub(crate) successor: Option<String>,
    /// Pre-rendered response headers, so a request only copies them.
    pub(crate) served: HeaderValue,
    pub(crate) deprecation_headers: Vec<(HeaderName, HeaderValue)>,
}

impl VersionInfo {
    pub(crate) fn is_retired(&self, now: SystemTime) -> bool {
        self.sunset.is_some_and(|sunset| sunset <= now)
    }
}

#[derive(Debug)]
pub(crate) struct SetInner {
    pub(crate) versions: Vec<VersionInfo>,
    pub(crate) default: usize,
    pub(crate) resolution: Resolution,
    pub(crate) conflict: Conflict,
    pub(crate) sources: Vec<Source>,
    pub(crate) path_prefix: String,
    pub(crate) header: HeaderName,
    pub(crate) query_param: String,
    pub(crate) supported_header: HeaderValue,
    pub(crate) deprecated_header: Option<HeaderValue>,
    pub(crate) vary: Option<HeaderValue>,
    pub(crate) report_versions: bool,
    pub(crate) max_source_len: usize,
    pub(crate) max_candidates: usize,
}

/// Longest text one source may hold by default: a version header value or query value.
pub const DEFAULT_MAX_SOURCE_LEN: usize = 256;
/// Most versions one request may name by default, all sources together.
pub const DEFAULT_MAX_CANDIDATES: usize = 8;

/// The supported versions of an API, validated. Cheap to clone.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use cutover_versioning::{Resolution, VersionSet};
///
/// let deprecated_on = UNIX_EPOCH + Duration::from_secs(1_735_689_600); // 2025-01-01
/// let versions = VersionSet::builder()
///     .supported(["1.0", "1.1", "1.2", "1.3"])
///     .default_version("1.3")
///     .deprecated("1.0", deprecated_on)
///     .build()
///     .unwrap();
/// assert_eq!(versions.head().to_string(), "1.3");
///
/// // Building validates: the default must be supported, sunset cannot precede deprecation.
/// assert!(VersionSet::builder().supported(["1.0"]).default_version("2.0").build().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct VersionSet {
    pub(crate) inner: Arc<SetInner>,
}

/// A version set that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionSetError {
    /// No version was declared.
    #[error("no supported versions were declared")]
    Empty,
    /// A declared version does not parse.
    #[error(transparent)]
    Invalid(#[from] ParseVersionError),
    /// A version is declared twice.
    #[error("version {0} is declared twice")]
    Duplicate(ApiVersion),
    /// The default, a deprecated or a sunset version is not among the supported ones.
    #[error("the {role} version {version} is not a supported version")]
    NotSupported {
        /// `"default"`, `"deprecated"`, `"sunset"` or `"successor"`.
        role: &'static str,
        /// The version named.
        version: ApiVersion,
    },
    /// RFC 9745 §4: a resource cannot be sunset before it is deprecated.
    #[error("version {0} has a sunset date earlier than its deprecation date")]
    SunsetBeforeDeprecation(ApiVersion),
    /// No source left to read versions from.
    #[error("at least one version source (header, path, query, media type) must be enabled")]
    NoSources,
    /// A deprecation or sunset date that does not parse.
    #[error("the {what} {value:?} is not a date (2025-01-01) or an RFC 3339 timestamp (2025-01-01T00:00:00Z)")]
    InvalidDate {
        /// Which date.
        what: &'static str,
        /// The text given.
        value: String,
    },
    /// A header or parameter name that cannot be used.
    #[error("invalid {what}: {value:?}")]
    InvalidName {
        /// What was being named.
        what: &'static str,
        /// The rejected name.
        value: String,
    },
}

/// A moment given to the builder: a time, or a date or timestamp still to be read.
#[derive(Debug, Clone)]
enum When {
    At(SystemTime),
    Text(String),
}

impl When {
    fn resolve(&self, what: &'static str) -> Result<SystemTime, VersionSetError> {
        match self {
            Self::At(time) => Ok(*time),
            Self::Text(text) => parse_moment(text).ok_or_else(|| VersionSetError::InvalidDate {
                what,
                value: text.clone(),
            }),
        }
    }
}

/// `2025-01-01` (midnight UTC) or an RFC 3339 timestamp (`2025-01-01T09:00:00Z`).
fn parse_moment(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Some(SystemTime::from(timestamp));
    }
    let date = text.parse::<jiff::civil::Date>().ok()?;
    let timestamp = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(SystemTime::from(timestamp))
}

/// Builds a [`VersionSet`]. Created by [`VersionSet::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct VersionSetBuilder {
    supported: Vec<String>,
    default: Option<String>,
    deprecated: Vec<(String, When)>,
    sunset: Vec<(String, When)>,
    successor: Vec<(String, String)>,
    resolution: Resolution,
    conflict: Conflict,
    sources: Vec<Source>,
    path_prefix: String,
    header: String,
    query_param: String,
    report_versions: bool,
    max_source_len: usize,
    max_candidates: usize,
}

impl VersionSet {
    /// Start declaring versions.
    pub fn builder() -> VersionSetBuilder {
        VersionSetBuilder {
            supported: Vec::new(),
            default: None,
            deprecated: Vec::new(),
            sunset: Vec::new(),
            successor: Vec::new(),
            resolution: Resolution::Exact,
            conflict: Conflict::FirstWins,
            sources: vec![Source::Header, Source::Path, Source::Query],
            path_prefix: "/api".to_owned(),
            header: "accept-version".to_owned(),
            query_param: "version".to_owned(),
            report_versions: true,
            max_source_len: DEFAULT_MAX_SOURCE_LEN,
            max_candidates: DEFAULT_MAX_CANDIDATES,
        }
    }

    /// Supported versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &ApiVersion> {
        self.inner.versions.iter().map(|info| &info.version)
    }

    /// The newest version: the one handlers produce.
    pub fn head(&self) -> &ApiVersion {
        &self.inner.versions[self.inner.versions.len() - 1].version
    }

    /// The version served when a request names none.
    pub fn default_version(&self) -> &ApiVersion {
        &self.inner.versions[self.inner.default].version
    }

    /// Whether `version` is supported.
    pub fn supports(&self, version: &ApiVersion) -> bool {
        self.index_of(version).is_some()
    }

    /// Whether `version` is deprecated.
    pub fn is_deprecated(&self, version: &ApiVersion) -> bool {
        self.index_of(version)
            .is_some_and(|i| self.inner.versions[i].deprecated.is_some())
    }

    /// The brief's `get_compatible_version`, made safe: the highest supported version with the
    /// same major number not newer than `requested`, or `None`.
    pub fn compatible(&self, requested: &ApiVersion) -> Option<&ApiVersion> {
        self.compatible_index(requested)
            .map(|i| &self.inner.versions[i].version)
    }

    pub(crate) fn index_of(&self, version: &ApiVersion) -> Option<usize> {
        self.inner
            .versions
            .binary_search_by(|info| info.version.cmp(version))
            .ok()
    }

    pub(crate) fn compatible_index(&self, requested: &ApiVersion) -> Option<usize> {
        let major = requested.as_semver().major;
        self.inner
            .versions
            .iter()
            .rposition(|info| &info.version <= requested && info.version.as_semver().major == major)
    }

    pub(crate) fn info(&self, index: usize) -> &VersionInfo {
        &self.inner.versions[index]
    }

    /// The sources consulted, in precedence order.
    pub fn sources(&self) -> &[Source] {
        &self.inner.sources
    }

    /// Negotiate outside tower (another framework, a gateway): the version for a request with
    /// these headers and this URI, and the URI with its version segment removed when the path
    /// carried one.
    ///
    /// ```
    /// use cutover_versioning::VersionSet;
    /// use http::{HeaderMap, Uri};
    ///
    /// let set = VersionSet::builder().supported(["1.0", "1.1"]).build().unwrap();
    /// let uri: Uri = "/api/v1.0/users?page=2".parse().unwrap();
    /// let (negotiated, rewritten) = set.negotiate(&HeaderMap::new(), &uri).unwrap();
    /// assert_eq!(negotiated.version().to_string(), "1.0");
    /// assert_eq!(rewritten.unwrap(), "/api/users?page=2");
    /// ```
    pub fn negotiate(
        &self,
        headers: &http::HeaderMap,
        uri: &http::Uri,
    ) -> Result<(crate::Negotiated, Option<http::Uri>), crate::VersionError> {
        crate::negotiate::negotiate(self, headers, uri, SystemTime::now)
    }
}

impl VersionSetBuilder {
    /// Add supported versions (any order).
    pub fn supported<I, V>(mut self, versions: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        self.supported.extend(versions.into_iter().map(Into::into));
        self
    }

    /// The version served to requests that name none (default: the newest).
    pub fn default_version(mut self, version: impl Into<String>) -> Self {
        self.default = Some(version.into());
        self
    }

    /// Mark `version` deprecated since `since`. Responses in it then carry `Deprecation`
    /// (RFC 9745) and the brief's `Warning: 299 - "API version 1.0 is deprecated"`.
    pub fn deprecated(mut self, version: impl Into<String>, since: SystemTime) -> Self {
        self.deprecated.push((version.into(), When::At(since)));
        self
    }

    /// [`deprecated`](Self::deprecated) with a date you can read: `"2025-01-01"` (midnight
    /// UTC) or an RFC 3339 timestamp (`"2025-01-01T09:00:00Z"`). A date that does not parse is
    /// an error of [`build`](Self::build).
    ///
    /// ```
    /// use cutover_versioning::VersionSet;
    ///
    /// let set = VersionSet::builder().supported(["1.0", "1.1"]).deprecated_on("1.0", "2025-01-01").build().unwrap();
    /// assert!(set.is_deprecated(&"1.0".parse().unwrap()));
    /// let typo = VersionSet::builder().supported(["1.0"]).deprecated_on("1.0", "2025-13-01").build();
    /// assert_eq!(typo.unwrap_err().to_string(), "the deprecation date \"2025-13-01\" is not a date (2025-01-01) or an RFC 3339 timestamp (2025-01-01T00:00:00Z)");
    /// ```
    pub fn deprecated_on(mut self, version: impl Into<String>, date: impl Into<String>) -> Self {
        self.deprecated.push((version.into(), When::Text(date.into())));
        self
    }

    /// Announce when `version` stops being served (`Sunset`, RFC 8594). After that moment
    /// requests for it are rejected as retired.
    pub fn sunset(mut self, version: impl Into<String>, at: SystemTime) -> Self {
        self.sunset.push((version.into(), When::At(at)));
        self
    }

    /// [`sunset`](Self::sunset) with a readable date or RFC 3339 timestamp, as
    /// [`deprecated_on`](Self::deprecated_on).
    pub fn sunset_on(mut self, version: impl Into<String>, date: impl Into<String>) -> Self {
        self.sunset.push((version.into(), When::Text(date.into())));
        self
    }

    /// Point clients of a deprecated `version` at migration docs:
    /// `Link: <url>; rel="successor-version"`.
    pub fn successor_link(mut self, version: impl Into<String>, url: impl Into<String>) -> Self {
        self.successor.push((version.into(), url.into()));
        self
    }

    /// What to do with requests for unsupported versions (default [`Resolution::Exact`]).
    pub fn resolution(mut self, resolution: Resolution) -> Self {
        self.resolution = resolution;
        self
    }

    /// What to do when sources disagree (default [`Conflict::FirstWins`]).
    pub fn on_conflict(mut self, conflict: Conflict) -> Self {
        self.conflict = conflict;
        self
    }

    /// The sources to consult, in precedence order (default: header, path, query).
    pub fn sources(mut self, sources: impl IntoIterator<Item = Source>) -> Self {
        self.sources = Vec::new();
        for source in sources {
            if !self.sources.contains(&source) {
                self.sources.push(source);
            }
        }
        self
    }

    /// The path prefix before the version segment (default `/api`: `/api/v1.2/...`).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = prefix.into();
        self
    }

    /// The version header (default `Accept-Version`).
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = name.into();
        self
    }

    /// The query parameter (default `version`).
    pub fn query_param(mut self, name: impl Into<String>) -> Self {
        self.query_param = name.into();
        self
    }

    /// Whether successful responses list `api-supported-versions` and
    /// `api-deprecated-versions` (default `true`). Error responses always do. Turning it off
    /// saves two headers per response on hot endpoints; `API-Version`, `Vary` and the
    /// deprecation headers are always sent.
    pub fn report_versions(mut self, report: bool) -> Self {
        self.report_versions = report;
        self
    }

    /// The longest value a version header (or `version` query parameter) may hold before the
    /// request is refused with 400 without reading it (default 256 bytes). Hostile clients send
    /// megabytes; honest ones send `1.2`.
    pub fn max_source_length(mut self, bytes: usize) -> Self {
        self.max_source_len = bytes.max(1);
        self
    }

    /// The most versions a request may name, all sources together, before it is refused with
    /// 400 (default 8). A list such as `Accept-Version: 1.2, 1.3` is legal; forty thousand
    /// entries are not.
    pub fn max_versions_per_request(mut self, count: usize) -> Self {
        self.max_candidates = count.max(1);
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<VersionSet, VersionSetError> {
        if self.supported.is_empty() {
            return Err(VersionSetError::Empty);
        }
        if self.sources.is_empty() {
            return Err(VersionSetError::NoSources);
        }
        let mut seen = BTreeSet::new();
        let mut versions = Vec::new();
        for text in &self.supported {
            let version: ApiVersion = text.parse()?;
            if !seen.insert(version.clone()) {
                return Err(VersionSetError::Duplicate(version));
            }
            versions.push(VersionInfo {
                served: header_value(&version.to_string()),
                version,
                deprecated: None,
                sunset: None,
                successor: None,
                deprecation_headers: Vec::new(),
            });
        }
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        let find = |role: &'static str, text: &str, versions: &[VersionInfo]| -> Result<usize, VersionSetError> {
            let version: ApiVersion = text.parse()?;
            versions
                .iter()
                .position(|info| info.version == version)
                .ok_or(VersionSetError::NotSupported { role, version })
        };
        for (text, since) in &self.deprecated {
            let index = find("deprecated", text, &versions)?;
            versions[index].deprecated = Some(since.resolve("deprecation date")?);
        }
        for (text, at) in &self.sunset {
            let index = find("sunset", text, &versions)?;
            versions[index].sunset = Some(at.resolve("sunset date")?);
        }
        for (text, url) in &self.successor {
            let index = find("successor", text, &versions)?;
            versions[index].successor = Some(url.clone());
        }
        for info in &mut versions {
            if let (Some(deprecated), Some(sunset)) = (info.deprecated, info.sunset)
                && sunset < deprecated
            {
                return Err(VersionSetError::SunsetBeforeDeprecation(info.version.clone()));
            }
            info.deprecation_headers = deprecation_headers(info)?;
        }
        let default = match &self.default {
            Some(text) => find("default", text, &versions)?,
            None => versions.len() - 1,
        };
        let header = HeaderName::try_from(self.header.as_str()).map_err(|_| VersionSetError::InvalidName {
            what: "version header name",
            value: self.header.clone(),
        })?;
        if self.query_param.is_empty() {
            return Err(VersionSetError::InvalidName {
                what: "query parameter name",
                value: self.query_param,
            });
        }
        let path_prefix = normalize_prefix(&self.path_prefix);
        let list = |filter: fn(&VersionInfo) -> bool| {
            versions
                .iter()
                .filter(|info| filter(info))
                .map(|info| info.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let supported_header = header_value(&list(|_| true));
        let deprecated = list(|info| info.deprecated.is_some());
        let deprecated_header = (!deprecated.is_empty()).then(|| header_value(&deprecated));
        let mut vary = Vec::new();
        if self.sources.contains(&Source::Header) {
            vary.push(header.as_str().to_owned());
        }
        if self.sources.contains(&Source::MediaType) {
            vary.push("accept".to_owned());
        }
        let vary = (!vary.is_empty()).then(|| header_value(&vary.join(", ")));
        Ok(VersionSet {
            inner: Arc::new(SetInner {
                versions,
                default,
                resolution: self.resolution,
                conflict: self.conflict,
                sources: self.sources,
                path_prefix,
                header,
                query_param: self.query_param,
                supported_header,
                deprecated_header,
                vary,
                report_versions: self.report_versions,
                max_source_len: self.max_source_len,
                max_candidates: self.max_candidates,
            }),
        })
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

fn header_value(text: &str) -> HeaderValue {
    // Version lists are made of digits, dots, commas and spaces only.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Deprecation` (RFC 9745: `@<unix seconds>`), `Sunset` (RFC 8594: an HTTP date), `Link` to
/// the successor, and the brief's `Warning: 299 - "..."` (RFC 9111 made `Warning` obsolete;
/// kept for the clients the brief was written for).
fn deprecation_headers(info: &VersionInfo) -> Result<Vec<(HeaderName, HeaderValue)>, VersionSetError> {
    let mut headers = Vec::new();
    if let Some(since) = info.deprecated {
        let seconds = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        headers.push((
            HeaderName::from_static("deprecation"),
            header_value(&format!("@{seconds}")),
        ));
        headers.push((
            http::header::WARNING,
            header_value(&format!("299 - \"API version {} is deprecated\"", info.version)),
        ));
    }
    if let Some(sunset) = info.sunset {
        headers.push((
            HeaderName::from_static("sunset"),
            header_value(&httpdate::fmt_http_date(sunset)),
        ));
    }
    if let Some(url) = &info.successor {
        let link = HeaderValue::from_str(&format!("<{url}>; rel=\"successor-version\"")).map_err(|_| {
            VersionSetError::InvalidName {
                what: "successor link",
                value: url.clone(),
            }
        })?;
        headers.push((http::header::LINK, link));
    }
    Ok(headers)
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn validates_what_it_is_given() {
        let base = || VersionSet::builder().supported(["1.0", "1.1"]);
        assert_eq!(VersionSet::builder().build().unwrap_err(), VersionSetError::Empty);
        assert!(matches!(
            base().supported(["1.1.0"]).build(),
            Err(VersionSetError::Duplicate(_))
        ));
        assert!(matches!(
            base().supported(["one"]).build(),
            Err(VersionSetError::Invalid(_))
        ));
        assert_eq!(
            base().default_version("2.0").build().unwrap_err().to_string(),
            "the default version 2.0 is not a supported version"
        );
        assert!(matches!(
            base().deprecated("0.9", at(1)).build(),
            Err(VersionSetError::NotSupported { .. })
        ));
        assert_eq!(
            base()
                .deprecated("1.0", at(100))
                .sunset("1.0", at(50))
                .build()
                .unwrap_err(),
            VersionSetError::SunsetBeforeDeprecation("1.0".parse().unwrap())
        );
        assert_eq!(base().sources([]).build().unwrap_err(), VersionSetError::NoSources);
        assert!(base().header("bad header").build().is_err());
    }

    #[test]
    fn sorts_versions_and_renders_headers_once() {
        let set = VersionSet::builder()
            .supported(["1.2", "1.0", "1.10", "1.1"])
            .deprecated("1.0", at(1_735_689_600))
            .sunset("1.0", at(1_767_225_600))
            .successor_link("1.0", "https://example.com/migrate")
            .build()
            .unwrap();
        let versions: Vec<_> = set.versions().map(ToString::to_string).collect();
        assert_eq!(versions, ["1.0", "1.1", "1.2", "1.10"]);
        assert_eq!(set.head().to_string(), "1.10");
        assert_eq!(set.default_version().to_string(), "1.10");
        assert_eq!(set.inner.supported_header, "1.0, 1.1, 1.2, 1.10");
        let old = set.info(0);
        let rendered: Vec<_> = old
            .deprecation_headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(
            rendered,
            [
                "deprecation: @1735689600",
                "warning: 299 - \"API version 1.0 is deprecated\"",
                "sunset: Thu, 01 Jan 2026 00:00:00 GMT",
                "link: <https://example.com/migrate>; rel=\"successor-version\"",
            ]
        );
    }

    #[test]
    fn compatible_stays_within_the_major_version() {
        let set = VersionSet::builder()
            .supported(["1.0", "1.1", "1.2", "1.3"])
            .build()
            .unwrap();
        let compatible = |v: &str| set.compatible(&v.parse().unwrap()).map(ToString::to_string);
        assert_eq!(compatible("1.4").as_deref(), Some("1.3"));
        assert_eq!(compatible("1.2.7").as_deref(), Some("1.2"));
        assert_eq!(compatible("1.0").as_deref(), Some("1.0"));
        assert_eq!(compatible("2.0"), None);
        assert_eq!(compatible("0.9"), None);
    }
}
