//! The token store conformance suite: written once, run on the token file
//! and on PostgreSQL (ignored without a server:
//! `scripts/test-postgres.sh cargo test -p strata-http --features postgres --lib auth`).

use async_trait::async_trait;

use super::store::TokenStore;
use super::{Scope, TokenInfo};
use crate::error::HttpError;

/// Where a backend keeps its tokens: each `open` is a new handle on the
/// same place, as another process (or a restart) would have.
#[async_trait]
pub(super) trait Place: Send + Sync {
    async fn open(&self) -> Box<dyn TokenStore>;
}

fn names(tokens: &[TokenInfo]) -> Vec<(&str, Scope)> {
    tokens.iter().map(|t| (t.name.as_str(), t.scope)).collect()
}

pub(super) async fn create_load_revoke(place: &dyn Place) {
    let a = place.open().await;
    assert!(a.load().await.unwrap().is_empty(), "a new place holds no token");
    let ci = a.create("ci", Scope::Admin).await.unwrap();
    let dash = a.create("dash", Scope::Read).await.unwrap();
    assert_eq!(ci.info.name, "ci");
    assert_ne!(ci.secret, dash.secret);
    // Another handle (another process, a restart) sees them.
    let b = place.open().await;
    let loaded = b.load().await.unwrap();
    let infos: Vec<TokenInfo> = loaded.iter().map(|t| t.info.clone()).collect();
    assert_eq!(names(&infos), [("ci", Scope::Admin), ("dash", Scope::Read)]);
    assert_eq!(
        loaded[0].hash,
        ci.secret.hash(),
        "only the hash is kept, and it is the secret's"
    );
    assert_eq!(loaded[1].hash, dash.secret.hash());
    assert_eq!(infos[0], ci.info);
    let revoked = b.revoke("ci").await.unwrap();
    assert_eq!(revoked, ci.info);
    let left = a.load().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].info.name, "dash");
}

pub(super) async fn names_are_unique_and_checked(place: &dyn Place) {
    let s = place.open().await;
    s.create("app", Scope::Write).await.unwrap();
    let taken = s.create("app", Scope::Admin).await.unwrap_err();
    assert!(
        matches!(taken, HttpError::AlreadyExists { resource: "token", .. }),
        "{taken}"
    );
    for bad in ["", "a b", "x/y", &"n".repeat(65)] {
        let e = s.create(bad, Scope::Read).await.unwrap_err();
        assert!(matches!(e, HttpError::InvalidId { .. }), "{bad:?}: {e}");
    }
    let missing = s.revoke("nobody").await.unwrap_err();
    assert!(
        matches!(missing, HttpError::NotFound { resource: "token", .. }),
        "{missing}"
    );
    let loaded = s.load().await.unwrap();
    assert_eq!(loaded.len(), 1, "refusals wrote nothing");
    assert_eq!(loaded[0].info.scope, Scope::Write, "the taken name kept its scope");
}

/// Instantiates the suite on the place `$place`, with `$attr`s on each test.
macro_rules! token_suite {
    ($place:expr $(, #[$attr:meta])*) => {
        token_suite!(@each ($place) [$(#[$attr])*] create_load_revoke, names_are_unique_and_checked,);
    };
    (@each ($place:expr) $attrs:tt $($name:ident,)*) => {
        $(token_suite!(@one ($place) $attrs $name);)*
    };
    (@one ($place:expr) [$($attr:tt)*] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $name() {
            let place = $place;
            crate::auth::conformance::$name(&place).await;
        }
    };
}

mod file {
    use super::*;
    use crate::auth::TokenFile;

    pub(super) struct FilePlace(tempfile::TempDir);

    #[async_trait]
    impl Place for FilePlace {
        async fn open(&self) -> Box<dyn TokenStore> {
            Box::new(TokenFile::in_data_dir(self.0.path()))
        }
    }

    token_suite!(FilePlace(tempfile::tempdir().unwrap()));
}

#[cfg(feature = "postgres")]
mod postgres {
    use strata_testkit::TestDatabase;

    use super::*;
    use crate::auth::PgTokens;

    pub(super) struct PgPlace {
        db: TestDatabase,
        opened: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Place for PgPlace {
        async fn open(&self) -> Box<dyn TokenStore> {
            let n = self.opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let store = self.db.store(&format!("tokens-{n}")).await;
            Box::new(PgTokens::open(&store).await.unwrap())
        }
    }

    fn place() -> PgPlace {
        PgPlace {
            db: TestDatabase::new(),
            opened: Default::default(),
        }
    }

    token_suite!(
        place(),
        #[cfg_attr(not(strata_postgres), ignore = "needs PostgreSQL: scripts/test-postgres.sh")]
    );
}
