//! The kubeftp operator: each FtpServer becomes a StatefulSet of
//! kubeftp-server pods, a ConfigMap with their config, a ConfigMap with each
//! replica's advertised address, and one Service per replica.
//!
//! A reconcile ([`reconcile`]) reads top to bottom: [`validate`] the spec,
//! [`build`] the children (pure), [`apply`] them, then write the
//! [`status`].

pub mod address;
pub mod apply;
pub mod build;
pub mod cache;
pub mod cli;
pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod labels;
pub mod metrics;
pub mod quantity;
pub mod reconcile;
pub mod run;
pub mod status;
pub mod validate;
pub mod watched;
