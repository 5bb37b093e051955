//! dbshift-provider: the control plane.
//!
//! [`Provider`] is what workflows use to find clusters and instances and to act on them as a
//! platform does (reboot, modify CA, build a green copy): a core, [`Fleet`], and capabilities
//! ([`Redirect`], [`InstanceControl`], [`Certificates`], [`BlueGreen`]); see [`provider`].
//! Three providers implement it, each behind a cargo feature (all on by default): `local`,
//! the embedded default, a lab of real `mariadbd` processes; `aws`, RDS and Aurora through the
//! RDS API; and `self-managed`, MySQL and MariaDB servers dbshift did not start, named by a
//! fleet file and discovered from their replication. This crate must never know about workflows: it acts on one instance or cluster at
//! a time, when told.

#[cfg(feature = "aws")]
pub mod aws;
pub mod error;
#[cfg(feature = "local")]
pub mod local;
mod model;
pub mod provider;
#[cfg(feature = "self-managed")]
pub mod selfmanaged;

/// The lab directory used when none is given; dbshift's journal and locks live there too,
/// whichever provider a command works on.
pub const DEFAULT_DIR: &str = ".dbshift/lab";

pub use error::{Error, Result};
pub use model::pem_certificates;
pub use model::{
    CaApply, CertificateAuthority, Cluster, Credential, Credentials, Deployment, Endpoint,
    GreenSpec, Instance, InstanceStatus, ProxyEndpoint, Rename, Role, Side,
};
pub use provider::{BlueGreen, Certificates, Fleet, InstanceControl, Provider, Redirect};
