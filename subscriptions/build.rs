//! Sets `cfg(strata_postgres)` when `STRATA_POSTGRES_URL` is set at build
//! time and the `postgres` feature is on: the PostgreSQL tests then run
//! (and fail without a server); otherwise they are reported as ignored,
//! with the command that runs them. See docs/testing.md.
fn main() {
    println!("cargo::rerun-if-env-changed=STRATA_POSTGRES_URL");
    println!("cargo::rustc-check-cfg=cfg(strata_postgres)");
    let url = std::env::var_os("STRATA_POSTGRES_URL").is_some_and(|u| !u.is_empty());
    if url && std::env::var_os("CARGO_FEATURE_POSTGRES").is_some() {
        println!("cargo::rustc-cfg=strata_postgres");
    }
}
