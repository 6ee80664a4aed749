//! The analytics worker of the example services, and the analytics database it owns.
//!
//! [`migrations`] holds the database's v1.3.0 migration: the brief's `migration_v1_3_0.py`,
//! rebuilt on `cutover-migrate` so it takes a lease before it runs, resumes where a killed run
//! stopped, throttles its batches, never writes a document twice, and can be reverted.
//! [`device`] turns a `User-Agent` header into the `device_info` the migration stores.

pub mod device;
pub mod migrations;
pub mod sample;
