//! Rebuilds the crate when a migration file is added, removed or edited (they are embedded).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
