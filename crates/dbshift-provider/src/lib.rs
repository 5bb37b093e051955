//! dbshift-provider: the control plane.
//!
//! [`Provider`] is what workflows use to find clusters and instances and to act on them as a
//! platform does (reboot, later: modify CA, snapshot, restore). [`local`] is the embedded
//! default: a lab of real `mariadbd` processes. This crate must never know about workflows:
//! it acts on one instance or cluster at a time, when told.

pub mod aws;
pub mod error;
pub mod local;
mod model;

pub use error::{Error, Result};
pub use model::{
    CaApply, CertificateAuthority, Cluster, Credential, Credentials, Deployment, Endpoint,
    GreenSpec, Instance, InstanceStatus, Provider, ProxyEndpoint, Rename, Role, Side,
};
