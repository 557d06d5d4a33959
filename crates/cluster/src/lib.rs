//! A single-node Kubernetes cluster on this machine for kubeftp's
//! end-to-end tests; see `main.rs` for the commands and [`layout`] for the
//! network plan.

pub mod cleanup;
pub mod command;
pub mod daemon;
pub mod layout;
pub mod load_balancer;
pub mod network;
pub mod node;
pub mod storage;
