//! Release 1.1 of the contract-gate harness's service: reads `users.name`; embeds the
//! migrations up to the backfill (see `contract_app.rs`).

#[path = "contract_app.rs"]
mod app;

fn main() -> std::process::ExitCode {
    app::main(app::Release {
        version: "1.1.0",
        column: "name",
        migrations: cutover::migrate::embed_migrations!("contract/migrations/blue"),
    })
}
