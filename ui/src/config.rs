//! The `[ui]` section of the configuration file.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::access::{Access, Token, default_allowed_hosts};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Address of the web UI, the HTTP API and `/healthz`, `/readyz`.
    pub http_addr: SocketAddr,
    /// Reading tokens: when set, the API (`/api/…`, `/prometheus/…`) needs
    /// `Authorization: Bearer <token>`, and the web UI asks for one once and keeps it in an
    /// HttpOnly cookie. Set them whenever the UI listens beyond loopback.
    pub tokens: Vec<Token>,
    /// Tokens for `/metrics` alone (for a Prometheus scraper); empty: `tokens` apply.
    pub metrics_tokens: Vec<Token>,
    /// Host names this server may be reached by (the `Host` header, without port); others get
    /// 421, which stops DNS rebinding. `"*"` allows any. Add the names users and scrapers use
    /// when listening beyond loopback.
    pub allowed_hosts: Vec<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: Vec::new(),
            metrics_tokens: Vec::new(),
            allowed_hosts: default_allowed_hosts(),
        }
    }
}

impl UiConfig {
    /// Who may read, as the server checks it.
    pub fn access(&self) -> Access {
        Access::new(
            self.tokens.clone(),
            self.metrics_tokens.clone(),
            self.allowed_hosts.clone(),
        )
    }
}
