//! Release 2.0 of the contract-gate harness's service: reads `users.display_name`; embeds the
//! contract migration that drops `name` too (see `contract_app.rs`).

#[path = "contract_app.rs"]
mod app;

fn main() -> std::process::ExitCode {
    app::main(app::Release {
        version: "2.0.0",
        column: "display_name",
        migrations: cutover::migrate::embed_migrations!("contract/migrations/green"),
    })
}
