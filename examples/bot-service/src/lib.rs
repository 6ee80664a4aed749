//! The chat bot of the example services: it takes commands from RabbitMQ, answers them by
//! calling the API, and publishes the replies back to RabbitMQ.
//!
//! Run with: `BOT_TOKEN=... API_URL=http://localhost:8000 cargo run -p bot-service`
//!
//! The bot is an old client on purpose: it asks the API for version 1.2 (`Accept-Version`)
//! whatever the API's newest version is, and keeps working while the API moves on.
//!
//! - [`commands`]: what the bot understands, and how it talks to the API.
//! - [`platform`]: how the bot and the chat platform's gateway authenticate each other's
//!   messages with the platform token (`BOT_TOKEN`): every command and reply is signed.
//! - [`run`]: probes on HTTP (RabbitMQ critical, the API a non-critical upstream), and a
//!   consumer that drains on SIGTERM.
//!
//! Copy this crate as a template: [`Config`] reads flags and environment (and keeps the token
//! out of logs), [`run::serve`] wires the service together.

pub mod commands;
mod config;
pub mod platform;
pub mod run;

pub use config::{Command, Config};
