//! kubeftp-server: an FTP server built for NAT and Kubernetes.
//!
//! Layout, from the outside in:
//! - [`server`]: listening, session limits, shared state;
//! - [`session`]: one control connection, command by command;
//! - [`control`] / [`command`] / [`reply`]: framing, parsing, replies;
//! - [`passive`] / [`address`]: the passive-port pool and the advertised
//!   address (live from a watched file);
//! - [`storage`] / [`vpath`] / [`listing`] / [`transfer`] / [`idle`]: files,
//!   confined to each user's home, and what moves over data connections;
//!   [`disk_writer`] / [`buffer_pool`]: how uploads reach the disk;
//!   [`leftovers`]: uploads a stopped server left unfinished;
//! - [`tls`] / [`stream`]: FTPS (RFC 4217);
//! - [`ops`] / [`metrics`]: health, readiness and Prometheus metrics;
//! - [`users`] / [`lockout`] / [`config`] / [`filewatch`] / [`cli`]:
//!   accounts, settings and the command line.

pub mod address;
pub mod buffer_pool;
pub mod cli;
pub mod command;
pub mod config;
pub mod control;
pub mod disk_writer;
pub mod filewatch;
pub mod idle;
pub mod leftovers;
pub mod listing;
pub mod lockout;
pub mod metrics;
pub mod ops;
pub mod passive;
#[cfg(test)]
mod pool_test;
pub mod reply;
pub mod server;
pub mod session;
pub mod storage;
pub mod stream;
pub mod tls;
pub mod transfer;
pub mod users;
pub mod vpath;

pub use config::Config;
pub use server::Server;
