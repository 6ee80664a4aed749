//! The example API's user resource (the brief's), for the versioning benchmarks.

use std::time::{Duration, UNIX_EPOCH};

pub use api_service::users::{Page, Profile, User, changes, versions};
use cutover::versioning::VersionSet;
use serde_json::json;

/// A realistic user in the newest representation.
pub fn user(id: i64) -> User {
    User {
        id,
        username: format!("user{id}"),
        email: format!("user{id}@example.com"),
        is_active: true,
        created_at: "2024-01-02T03:04:05Z".into(),
        updated_at: "2024-06-07T08:09:10Z".into(),
        profile: Profile {
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            avatar_url: None,
        },
        preferences: (&json!({"theme": "dark", "notifications": {"email": true, "sms": false}})).into(),
    }
}

/// The example's versions without `api-supported-versions` / `api-deprecated-versions` on
/// successful responses.
///
/// # Panics
///
/// Never: the declaration is fixed.
pub fn lean_versions() -> VersionSet {
    VersionSet::builder()
        .supported(["1.0", "1.1", "1.2", "1.3"])
        .deprecated("1.0", UNIX_EPOCH + Duration::from_secs(1_735_689_600))
        .report_versions(false)
        .build()
        .expect("valid versions")
}
