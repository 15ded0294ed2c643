//! The `[ui]` section of the configuration file.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Address of the web UI, the HTTP API and `/healthz`, `/readyz`.
    pub http_addr: SocketAddr,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}
