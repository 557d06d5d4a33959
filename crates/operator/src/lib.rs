//! The kubeftp operator: each FtpServer becomes a StatefulSet of
//! kubeftp-server pods, a ConfigMap with their config, a ConfigMap with each
//! replica's advertised address, and one Service per replica.
//!
//! A reconcile reads top to bottom: [`validate`] the spec, [`build`] the
//! children (pure), [`apply`] them, then write the [`status`].

pub mod build;
pub mod cli;
pub mod crd;
pub mod labels;
pub mod validate;
