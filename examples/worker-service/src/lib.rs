//! The analytics worker of the example services: it consumes the user events the API
//! publishes to RabbitMQ and stores them in MongoDB, which it owns the schema of.
//!
//! Run with: `cargo run -p worker-service` (MongoDB at `MONGODB_URL`, RabbitMQ at `AMQP_URL`),
//! then `curl localhost:8002/health`.
//!
//! - [`run`]: probes on HTTP, the schema migrated at start-up behind the migration lease (every
//!   replica may try; one applies), and a consumer that stores each event once and, on
//!   SIGTERM, cancels, finishes and acks what it holds and gives the rest back to the broker.
//! - [`events`]: one event, stored idempotently under its own id.
//! - [`migrations`]: the database's v1.3.0 migration: the brief's `migration_v1_3_0.py`,
//!   rebuilt on `cutover-migrate` so it takes a lease before it runs, resumes where a killed
//!   run stopped, throttles its batches, never writes a document twice, and can be reverted.
//! - [`device`]: a `User-Agent` header as the `device_info` the migration stores.
//!
//! Copy this crate as a template: [`Config`] reads flags and environment, [`run::serve`] wires
//! the service together.

mod config;
pub mod device;
pub mod events;
pub mod migrations;
pub mod run;
pub mod sample;

pub use config::{Command, Config, Migrate, Run};
