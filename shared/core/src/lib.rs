//! The core of greenhouse-relay: Greenhouse webhooks in, signed Cloud Elements notifications out.
//!
//! Layers, inner first (inner never imports outer):
//! - domain, pure and synchronous: [`json`] (the validating scanner), [`greenhouse`], [`notification`], [`instance`], [`retry`],
//!   [`network`];
//! - [`ports`]: what the use cases need from the world;
//! - use cases, async, against the ports: [`ingest`], [`delivery`], [`manage`];
//! - [`api`]: the one HTTP router every runtime serves.

pub mod api;
pub mod delivery;
pub mod greenhouse;
pub mod ingest;
pub mod instance;
pub mod json;
pub mod manage;
pub mod network;
pub mod notification;
pub mod ports;
pub mod retry;
