//! strata-http: the strata log and its order and stock domain over HTTP.
//!
//! The way API clients expect optimistic concurrency to work: every `GET` of
//! a resource carries `ETag: "<version>"`; a write with `If-Match` (or an
//! `expected_version` in the body) whose version is stale is refused with
//! `409 Conflict` (or `412` by configuration) and an RFC 9457
//! `application/problem+json` body holding the current version, the
//! resource as it is now and the events since the client's version, so the
//! client can show a diff, merge and retry. Every `POST` honours
//! `Idempotency-Key`, recorded durably beside the log. Bad input is refused
//! with a problem body before anything is written. `/metrics` counts
//! conflicts per route; `/openapi.json` is generated from the handlers.
//!
//! ```no_run
//! # async fn run() -> Result<(), strata_http::HttpError> {
//! use strata_http::{Config, ConflictStatus, Server};
//!
//! let config = Config { conflict_status: ConflictStatus::PreconditionFailed, ..Config::default() };
//! let server = Server::start("./strata-data", "127.0.0.1:8080".parse().unwrap(), config).await?;
//! // ... until a signal:
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Who may call it: on a loopback address with no token configured,
//! anyone (as before tokens existed); otherwise every route but the
//! health check and the API's description needs `Authorization: Bearer`
//! with a token of the route's scope ([`Scope`], [`TokenFile`]), and a
//! service on another address without tokens refuses to start unless
//! [`Config::insecure`]. See `docs/security.md`.
//!
//! Decisions (409 vs 412, problem types, key storage, reserved streams,
//! event format): `docs/http.md`.

#![warn(missing_docs)]

mod auth;
mod config;
mod error;
mod extract;
mod idempotency;
mod json;
mod metrics;
mod model;
mod openapi;
mod precondition;
mod problem;
mod router;
mod routes;
mod server;
mod state;
mod ui;

#[cfg(feature = "postgres")]
pub use auth::PgTokens;
pub use auth::{IssuedToken, MAX_TOKENS, Scope, Secret, StoredToken, TokenFile, TokenInfo, TokenStore};
pub use config::{Config, ConflictStatus};
pub use error::{HttpError, StaleVersion, TokenRefusal};
pub use idempotency::{IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED};
pub use metrics::{ACCESS_LOG, REQUEST_ID};
pub use model::{
    AdjustStock, AppendView, CancelOrder, DeliverOrder, EventView, EventsPage, Health, Line, MetadataBody,
    NewEventBody, OrderSummaryView, OrderView, OrdersView, PayOrder, PlaceOrder, ReceiveStock, RegisterStock,
    ShipOrder, StockLevelView, StockLevelsView, StockView,
};
pub use openapi::openapi;
pub use problem::{DocumentProblem, PROBLEM_JSON, Problem, ProblemDescription, ProblemType};
pub use routes::STRATA_POSITION;
pub use routes::browse::{LogPage, StreamItem, StreamsPage};
pub use routes::documents::{
    ACTOR_HEADER, ChangeView, CollectionView, DeclareCollection, DeletedView, DocumentBody, DocumentListView,
    HistoryView, JsonPatchBody, ListedDocumentView, MERGE_BASE_HEADER, MERGED_ONTO_HEADER, MergePatchBody,
    UniqueFieldSpec, UniqueFieldView,
};
pub use routes::groups::{
    AckBody, BatchView, CountersView, DeliveryView, FilterBody, GroupSettingsBody, GroupSettingsView, GroupView,
    GroupsView, NackActionBody, NackBody, ParkedPage, ParkedView, ReadBody, ReplayBody, ReplayView, SettledView,
    StartBody, StrategyBody,
};
pub use routes::live::LAST_EVENT_ID;
pub use routes::streams::is_reserved_stream;
pub use server::Server;
pub use ui::{CONTENT_SECURITY_POLICY, asset_names};
