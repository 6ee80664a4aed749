//! Rebuild when a migration file is added (the embedded files themselves are tracked by Cargo).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
