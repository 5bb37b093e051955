//! The AWS blue/green fixture: a `moto_server` (behind the testkit's shim) holding the
//! instance `orders` (blue), mapped onto an RDS-mode lab of one writer and one replica, so that
//! the SQL half of a blue/green on AWS runs on real servers. Blue is `lab-1-1` (the writer);
//! the green that `bluegreen create` builds, `orders-green`, is `lab-1-2` (its replica, so
//! green holds blue's data). The shim applies each parameter group's `read_only` to the lab
//! server mapped to it, as RDS applies that dynamic parameter at once, so a fence by the group
//! is real. The provider, the `dbshift` binary and the proxy tests all start from here.
//!
//! The fixture builds and maps; it never creates green nor switches anything: the test does.

use std::collections::BTreeMap;

use dbshift_provider::aws::{AwsOptions, TAG_ID};
use dbshift_provider::local::Lab;
use dbshift_provider::{Endpoint, Fleet};

use crate::moto::{self, Moto};
use crate::TestLab;

/// Blue's identifier at AWS.
pub const BLUE: &str = "orders";
/// The green `bluegreen create --name orders-green` builds.
pub const GREEN: &str = "orders-green";
/// The lab server behind blue.
pub const BLUE_SERVER: &str = "lab-1-1";
/// The lab server behind green.
pub const GREEN_SERVER: &str = "lab-1-2";

/// See the module documentation. Dropping it stops moto and the lab.
pub struct AwsBlueGreen {
    pub moto: Moto,
    pub lab: TestLab,
}

impl AwsBlueGreen {
    /// An RDS-mode lab of one writer and one replica, moto with blue seeded (MariaDB 10.11,
    /// its own parameter group `orders-params`), and each group's `read_only` applied to its
    /// server (green's group is the copy `bluegreen create` makes).
    pub async fn start() -> AwsBlueGreen {
        let lab = TestLab::start_rds(1, 1).await;
        let m = Moto::start(moto::default_shim()).await;
        moto::seed_instance(
            &m.moto_url(),
            BLUE,
            "mariadb",
            "10.11.8",
            "mariadb10.11",
            "orders-params",
        )
        .await;
        moto::map_parameter_groups(
            &m,
            lab.lab(),
            &[
                ("orders-params", BLUE_SERVER),
                ("orders-green-params", GREEN_SERVER),
            ],
        );
        moto::set_test_credentials();
        AwsBlueGreen { moto: m, lab }
    }

    pub fn lab(&self) -> &Lab {
        self.lab.lab()
    }

    /// Where the provider connects for each AWS identifier (`DBSHIFT_AWS_ENDPOINTS`): blue and
    /// green at their lab servers.
    pub async fn endpoints(&self) -> BTreeMap<String, Endpoint> {
        let mut endpoints = BTreeMap::new();
        for (name, server) in [(BLUE, BLUE_SERVER), (GREEN, GREEN_SERVER)] {
            let at = self
                .lab()
                .resolve(server)
                .await
                .unwrap_or_else(|e| panic!("{server}: {e}"));
            endpoints.insert(name.to_string(), at);
        }
        endpoints
    }

    /// Provider options on the shim with the lab's admin credentials and [`Self::endpoints`].
    pub async fn options(&self) -> AwsOptions {
        AwsOptions {
            endpoint_url: Some(self.moto.url()),
            db: Some(
                self.lab()
                    .credentials()
                    .expect("the lab has admin credentials"),
            ),
            endpoints: self.endpoints().await,
            ..moto::test_options()
        }
    }

    /// The environment `dbshift --provider aws` needs for the SQL half: the lab's users, its
    /// CA bundle and [`Self::endpoints`] as `DBSHIFT_AWS_ENDPOINTS`.
    pub async fn cli_env(&self) -> Vec<(&'static str, String)> {
        let users = &self.lab().state().users;
        let endpoints = self
            .endpoints()
            .await
            .iter()
            .map(|(name, e)| format!("{name}={e}"))
            .collect::<Vec<_>>()
            .join(",");
        vec![
            ("DBSHIFT_DB_USER", users.admin.user.clone()),
            ("DBSHIFT_DB_PASSWORD", users.admin.password.clone()),
            ("DBSHIFT_REPL_USER", users.replication.user.clone()),
            ("DBSHIFT_REPL_PASSWORD", users.replication.password.clone()),
            (
                "DBSHIFT_DB_CA_BUNDLE",
                self.lab().ca_bundle().display().to_string(),
            ),
            ("DBSHIFT_AWS_ENDPOINTS", endpoints),
        ]
    }

    /// dbshift's id of the instance holding the identifier `name` at AWS, straight from moto.
    pub async fn holder_of(&self, name: &str) -> Option<String> {
        moto::raw_tags(&self.moto.moto_url(), name)
            .await
            .and_then(|t| t.get(TAG_ID).cloned())
    }

    /// `@@read_only` of a lab server.
    pub async fn read_only(&self, server: &str) -> bool {
        let mut s = self
            .lab()
            .connect_admin(server)
            .await
            .unwrap_or_else(|e| panic!("{server}: {e}"));
        let ro = s
            .read_only()
            .await
            .unwrap_or_else(|e| panic!("{server}: read_only: {e}"));
        s.close().await;
        ro
    }
}
