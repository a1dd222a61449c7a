//! Sets `cfg(strata_postgres)` when `STRATA_POSTGRES_URL` is set at build
//! time and the `postgres` feature is on: the PostgreSQL tests then run
//! (and fail without a server); otherwise they are reported as ignored,
//! with the command that runs them. Likewise `cfg(strata_browser)` when
//! `STRATA_BROWSER_TESTS` is set (by scripts/test-browser.sh, which also
//! starts chromedriver): the web console's tests in a real browser. See docs/testing.md.
fn main() {
    println!("cargo::rerun-if-env-changed=STRATA_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=STRATA_BROWSER_TESTS");
    println!("cargo::rustc-check-cfg=cfg(strata_postgres)");
    println!("cargo::rustc-check-cfg=cfg(strata_browser)");
    let url = std::env::var_os("STRATA_POSTGRES_URL").is_some_and(|u| !u.is_empty());
    if url && std::env::var_os("CARGO_FEATURE_POSTGRES").is_some() {
        println!("cargo::rustc-cfg=strata_postgres");
    }
    if std::env::var_os("STRATA_BROWSER_TESTS").is_some_and(|u| !u.is_empty()) {
        println!("cargo::rustc-cfg=strata_browser");
    }
}
