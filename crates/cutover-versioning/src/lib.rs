//! API versions negotiated and transformed, Stripe-style.
//!
//! - **Negotiation.** A [`VersionSet`] declares the supported versions, the default, deprecated
//!   and sunset versions. The [`VersionLayer`] reads the version from the `Accept-Version`
//!   header, the `/api/v1.2/...` path (the segment is removed before routing, so each route is
//!   declared once), the `?version=` query, or optionally `Accept: ...; version=1.2`, in that
//!   order. Malformed, unsupported and retired versions get `400` with an RFC 9457 problem
//!   document listing the supported versions: never a silent fallback.
//! - **Headers.** Every response says which version it is (`API-Version`), what is supported
//!   (`api-supported-versions`, `api-deprecated-versions`) and carries `Vary` for the header
//!   sources; deprecated versions add `Deprecation` (RFC 9745), `Sunset` (RFC 8594), a
//!   `Link` to the successor, and the `Warning: 299` the original brief asked for.
//! - **Version changes.** Handlers only produce the newest representation. Each version that
//!   broke compatibility declares what it changed, once, in [`VersionChanges`]: renames, added
//!   and removed fields, nesting and flattening, enum values, or custom code. Responses
//!   returned as [`Versioned<T>`] are walked back one version at a time, wherever the resource
//!   appears (lists, pages, inside other resources); request bodies read with
//!   [`VersionedJson<T>`] are walked forward. The newest version pays nothing: the value is
//!   serialized once, directly.
//!
//! ```
//! use axum::{Router, routing::get};
//! use cutover_versioning::{Shape, VersionChanges, VersionLayer, VersionSet, Versioned, VersionedShape};
//! use tower::Layer;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct User { id: u64, username: String }
//! impl VersionedShape for User {
//!     fn shape() -> Shape { Shape::resource("user") }
//! }
//!
//! let versions = VersionSet::builder().supported(["1.0", "1.1"]).build()?;
//! let changes = VersionChanges::builder(&versions)
//!     .resource("user", ["id", "username"], |user| user.version("1.1", |v| v.renamed("name", "username")))
//!     .build()?;
//! changes.register::<User>()?; // validate at start-up
//!
//! let api: Router = Router::new().route("/api/me", get(|| async { Versioned::ok(User { id: 1, username: "ada".into() }) }));
//! let app = VersionLayer::new(versions).changes(changes).layer(api);
//! # drop(app);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//!
//! | feature | enables |
//! | --- | --- |
//! | `axum` (default) | [`Versioned`], [`VersionedJson`], [`VersionRange`], [`Negotiated`] as an extractor |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod changes;
#[cfg(feature = "axum")]
mod extract;
mod json;
pub mod layer;
mod negotiate;
mod payload;
mod problem;
mod set;
mod version;

pub use changes::{
    ChangeBuilder, ReadOnlyFields, ResourceBuilder, Shape, TransformError, UnknownFields, VersionChanges,
    VersionChangesBuilder, VersionChangesError, VersionedShape,
};
#[cfg(feature = "axum")]
pub use extract::{
    MissingVersionLayer, VersionRange, VersionRangeService, Versioned, VersionedJson, VersionedJsonRejection,
    VersionedUpdate,
};
pub use layer::{VersionLayer, VersionService, Versioning};
pub use negotiate::Negotiated;
pub use payload::VersionedPayload;
pub use problem::VersionError;
pub use set::{
    Conflict, DEFAULT_MAX_CANDIDATES, DEFAULT_MAX_SOURCE_LEN, Resolution, Source, VersionSet, VersionSetBuilder,
    VersionSetError,
};
pub use version::{ApiVersion, ParseVersionError};

/// This crate's README, compiled as doctests so its example cannot rot.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
