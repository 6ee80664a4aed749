//! The contract gate through the command line: `up --phase contract` refused (exit code 3)
//! while an instance built without the migration is live, `status` and `plan` naming it (in
//! text and JSON), and `--force-contract --reason` recorded and loud.

use cutover_migrate::{
    MigrationSet,
    instances::{InstancePhase, InstanceRegistry},
};
use cutover_tests::{assert_exit, assert_success, output_text};

use super::Fixture;

const EXPAND: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text, display_name text);";
const CONTRACT: &str =
    "-- cutover:phase contract\n-- cutover:allow ban-drop-column\nALTER TABLE users DROP COLUMN name;";

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(output)))
}

/// An instance whose binary embeds the files `files` of the fixture's directory.
async fn instance(fixture: &Fixture, files: &[(&str, &str)], version: &str) -> InstanceRegistry {
    let set = MigrationSet::from_files(
        files
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned())),
    )
    .unwrap();
    let registry = InstanceRegistry::new(&fixture.pool, "api-service", &set)
        .version(version)
        .host("blue-host");
    registry.beat(InstancePhase::Ready).await.unwrap();
    registry
}

#[tokio::test]
async fn contract_is_refused_with_exit_code_3_while_an_old_instance_is_live() {
    let fixture = Fixture::new().await;
    fixture.write("0001_users.up.sql", EXPAND);
    assert_success(&fixture.run(&["up"]));
    let blue = instance(&fixture, &[("0001_users.up.sql", EXPAND)], "1.2.0").await;
    fixture.write("0002_drop_name.up.sql", CONTRACT);

    let refused = fixture.run(&["up", "--phase", "contract"]);
    let message = assert_exit(3, &refused);
    assert!(message.contains("refusing to contract"), "{message}");
    assert!(
        message.contains("contract migration 2 (drop_name) is not embedded by 1 live instance(s)"),
        "{message}"
    );
    assert!(message.contains("api-service 1.2.0 on blue-host"), "{message}");
    assert!(
        message.contains(&format!("id {}, ready, last seen", blue.id())),
        "{message}"
    );
    assert!(message.contains("expires in"), "{message}");
    assert!(message.contains("--force-contract --reason"), "{message}");
    assert_eq!(
        fixture
            .scalar(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'name'"
            )
            .await,
        1,
        "nothing was applied"
    );
    let refused_json = json(&fixture.run(&["--json", "up", "--phase", "contract"]));
    assert_eq!(refused_json["blocked"][0]["version"], 2);
    assert_eq!(refused_json["blocked"][0]["blocked_by"][0]["id"], blue.id());

    // status and plan name the instance and what it blocks.
    let status = output_text(&fixture.run(&["status"]));
    assert!(status.contains("1 live instance(s):"), "{status}");
    assert!(
        status.contains(&format!("api-service 1.2.0 on blue-host (id {}, ready", blue.id())),
        "{status}"
    );
    assert!(status.contains("if it is gone); blocks contract 2\n"), "{status}");
    let status = json(&fixture.run(&["--json", "status"]));
    assert_eq!(status["migrations"][1]["state"], "pending");
    assert_eq!(status["instances"][0]["version"], "1.2.0");
    assert_eq!(status["instances"][0]["migrations"], serde_json::json!([1]));
    assert_eq!(status["instances"][0]["blocks"], serde_json::json!([2]));
    assert!(status["instances"][0]["expires_in_ms"].as_u64().unwrap() > 20_000);
    let plan = output_text(&fixture.run(&["plan", "--phase", "contract"]));
    assert!(
        plan.contains(&format!(
            "REFUSED while 1 live instance(s) do not embed it: {}",
            blue.id()
        )),
        "{plan}"
    );
    let plan = json(&fixture.run(&["--json", "plan", "--phase", "contract"]));
    assert_eq!(plan["migrations"][0]["blocked_by"][0], blue.id());
    assert_eq!(plan["instances"][0]["blocks"], serde_json::json!([2]));

    // The override needs a reason, and says loudly what it did.
    let no_reason = fixture.run(&["up", "--phase", "contract", "--force-contract"]);
    assert!(
        output_text(&no_reason).contains("--reason"),
        "{}",
        output_text(&no_reason)
    );
    assert!(!no_reason.status.success());
    let forced = fixture.run(&[
        "up",
        "--phase",
        "contract",
        "--force-contract",
        "--reason",
        "blue is out of the load balancer",
    ]);
    let text = assert_success(&forced);
    assert!(text.contains("WARNING: FORCED past the contract gate"), "{text}");
    assert!(text.contains("2 FORCED past 1 live instance(s)"), "{text}");
    let note: String = sqlx::query_scalar("SELECT forced_contract FROM _cutover_migrations WHERE version = 2")
        .fetch_one(&fixture.pool)
        .await
        .unwrap();
    assert!(
        note.contains("blue is out of the load balancer") && note.contains(blue.id()),
        "{note}"
    );
    let status = output_text(&fixture.run(&["status"]));
    assert!(status.contains("(FORCED: forced by"), "{status}");
    blue.deregister().await.unwrap();
    fixture.drop_database().await;
}

#[tokio::test]
async fn contract_runs_once_the_old_instance_deregisters() {
    let fixture = Fixture::new().await;
    fixture.write("0001_users.up.sql", EXPAND);
    assert_success(&fixture.run(&["up"]));
    let blue = instance(&fixture, &[("0001_users.up.sql", EXPAND)], "1.2.0").await;
    fixture.write("0002_drop_name.up.sql", CONTRACT);
    let green = instance(
        &fixture,
        &[("0001_users.up.sql", EXPAND), ("0002_drop_name.up.sql", CONTRACT)],
        "1.3.0",
    )
    .await;
    assert_exit(3, &fixture.run(&["up", "--phase", "contract"]));
    blue.deregister().await.unwrap();
    let status = output_text(&fixture.run(&["status"]));
    assert!(
        status.contains("api-service 1.3.0") && !status.contains("blocks contract"),
        "{status}"
    );
    let applied = assert_success(&fixture.run(&["up", "--phase", "contract"]));
    assert!(applied.contains("applied 2"), "{applied}");
    green.deregister().await.unwrap();
    assert!(output_text(&fixture.run(&["status"])).contains("no live instances registered"));
    fixture.drop_database().await;
}
