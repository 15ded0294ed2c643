//! Incidents: active alerts grouped under the failing service or dependency that causes them.
//!
//! Each alert has a subject (its `service`, or the `server` of its edge). From the subject the
//! walk follows the window's failing edges (or, for latency, the edge that holds most of the
//! subject's p99) down to a node with no such edge: the root. Alerts with the same root are one
//! incident. Where several edges fail, the one toward where the failing traces' errors begin is
//! taken.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use spyglass_query::Edge;

use crate::builtin::{Kind, Observation};
use crate::config::BuiltinConfig;
use crate::state::Labels;

/// An incident: its root cause and the alerts it explains. Times are Unix nanoseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// The failing service or dependency (a database, a cache, a service that stopped
    /// answering).
    pub root: String,
    pub started_at: u64,
    pub resolved_at: Option<u64>,
    /// The alerts in it: rule name and labels.
    pub alerts: Vec<AlertRef>,
    /// The services whose alerts it explains, the root's own alerts aside.
    pub affected: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertRef {
    pub rule: String,
    pub labels: Labels,
}

/// An active alert as the incident finder sees it.
pub struct Active<'a> {
    pub rule: &'a str,
    pub labels: &'a Labels,
    pub trace_origins: &'a [String],
}

/// The subject of an alert: the service it is about, the `server` of an edge, or (for rules
/// that name none) the rule itself.
pub(crate) fn subject(alert: &Active<'_>) -> String {
    let labels = alert.labels;
    labels
        .get("server")
        .or_else(|| labels.get("service"))
        .or_else(|| labels.get("service_name"))
        .cloned()
        .unwrap_or_else(|| alert.rule.to_owned())
}

/// Where the alert's cause lies: walks the failing (or slow) edges down from its subject.
pub fn root(alert: &Active<'_>, observation: &Observation, c: &BuiltinConfig) -> String {
    let latency = alert.rule == Kind::ServiceLatency.name();
    let origins: BTreeSet<&str> = alert.trace_origins.iter().map(String::as_str).collect();
    let mut node = subject(alert);
    let mut visited = BTreeSet::from([node.clone()]);
    if alert.rule == Kind::ServiceSilent.name() {
        return node;
    }
    loop {
        let next = if latency {
            slowest_edge(&node, observation, c)
        } else {
            failing_edge(&node, &observation.edges, &origins, c)
        };
        match next {
            Some(server) if visited.insert(server.clone()) => node = server,
            _ => return node,
        }
    }
}

fn failing_edge(
    client: &str,
    edges: &[Edge],
    origins: &BTreeSet<&str>,
    c: &BuiltinConfig,
) -> Option<String> {
    edges
        .iter()
        .filter(|e| e.client == client && e.server != client)
        .filter(|e| {
            e.health.calls >= c.min_requests as f64
                && e.health.error_ratio > c.dependency_error_ratio
        })
        .max_by(|a, b| {
            let toward_origin = |e: &Edge| origins.contains(e.server.as_str());
            toward_origin(a)
                .cmp(&toward_origin(b))
                .then(a.health.errors.total_cmp(&b.health.errors))
        })
        .map(|e| e.server.clone())
}

/// The callee that holds most of `client`'s p99: at least half of it, and above the floor.
fn slowest_edge(client: &str, observation: &Observation, c: &BuiltinConfig) -> Option<String> {
    let floor = c.latency_floor_ms as f64 / 1000.0;
    let own = observation
        .window
        .get(client)
        .and_then(|h| h.p99_seconds)
        .or_else(|| {
            observation
                .edges
                .iter()
                .filter(|e| e.server == client)
                .filter_map(|e| e.health.p99_seconds)
                .reduce(f64::max)
        })?;
    observation
        .edges
        .iter()
        .filter(|e| e.client == client && e.server != client)
        .filter_map(|e| Some((e, e.health.p99_seconds?)))
        .filter(|(_, p99)| *p99 > floor && *p99 >= own * 0.5)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(e, _)| e.server.clone())
}

/// The open incidents, by root; persisted with the alert state so that ids survive restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Incidents {
    pub open: BTreeMap<String, Incident>,
    /// Resolved incidents still shown (15 minutes, as resolved alerts).
    pub recent: Vec<Incident>,
}

impl Incidents {
    /// Sets the incidents to what `roots` (alert → root) says at `now`: new roots open an
    /// incident, roots without alerts resolve theirs. Returns each alert's incident id.
    pub fn update(
        &mut self,
        now: u64,
        roots: Vec<(AlertRef, String)>,
    ) -> BTreeMap<AlertRef, String> {
        let mut by_root: BTreeMap<String, Vec<AlertRef>> = BTreeMap::new();
        for (alert, root) in roots {
            by_root.entry(root).or_default().push(alert);
        }
        let closed: Vec<String> = self
            .open
            .keys()
            .filter(|root| !by_root.contains_key(*root))
            .cloned()
            .collect();
        for root in closed {
            if let Some(mut incident) = self.open.remove(&root) {
                incident.resolved_at = Some(now);
                self.recent.push(incident);
            }
        }
        self.recent.retain(|i| {
            now.saturating_sub(i.resolved_at.unwrap_or(now))
                < crate::state::RESOLVED_RETENTION_NANOS
        });
        let mut ids = BTreeMap::new();
        for (root, mut alerts) in by_root {
            alerts.sort();
            let incident = self.open.entry(root.clone()).or_insert_with(|| Incident {
                id: incident_id(&root, now),
                root: root.clone(),
                started_at: now,
                resolved_at: None,
                alerts: Vec::new(),
                affected: Vec::new(),
            });
            incident.affected = alerts
                .iter()
                .flat_map(|a| {
                    ["client", "service", "service_name"]
                        .iter()
                        .filter_map(|k| a.labels.get(*k))
                })
                .filter(|s| **s != root)
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for alert in &alerts {
                ids.insert(alert.clone(), incident.id.clone());
            }
            incident.alerts = alerts;
        }
        ids
    }
}

/// A short, stable id: the root and when the incident began.
fn incident_id(root: &str, started_at: u64) -> String {
    let hash = crate::notify::fnv1a(root.bytes().chain(started_at.to_le_bytes()));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use spyglass_query::Health;

    use super::*;

    fn edge(client: &str, server: &str, calls: f64, errors: f64, p99: f64) -> Edge {
        Edge {
            client: client.into(),
            server: server.into(),
            connection_type: String::new(),
            health: Health {
                calls,
                errors,
                error_ratio: errors / calls,
                p99_seconds: Some(p99),
                ..Health::default()
            },
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn root_of(rule: &str, l: &Labels, o: &Observation, origins: &[String]) -> String {
        root(
            &Active {
                rule,
                labels: l,
                trace_origins: origins,
            },
            o,
            &BuiltinConfig::default(),
        )
    }

    #[test]
    fn callers_alerts_lead_to_the_failing_dependency() {
        let o = Observation {
            edges: vec![
                edge("frontend", "checkout", 100.0, 40.0, 0.1),
                edge("checkout", "payments", 100.0, 40.0, 0.1),
                edge("checkout", "cart", 100.0, 0.0, 0.1),
                edge("payments", "postgresql", 100.0, 0.0, 0.1),
            ],
            ..Observation::default()
        };
        let frontend = labels(&[("service", "frontend")]);
        assert_eq!(root_of("ServiceErrors", &frontend, &o, &[]), "payments");
        let edge_alert = labels(&[("client", "checkout"), ("server", "payments")]);
        assert_eq!(
            root_of("DependencyFailing", &edge_alert, &o, &[]),
            "payments"
        );
        let other = labels(&[("service", "search")]);
        assert_eq!(root_of("ServiceErrors", &other, &o, &[]), "search");
    }

    #[test]
    fn where_two_edges_fail_the_traces_decide() {
        let o = Observation {
            edges: vec![
                edge("checkout", "payments", 100.0, 50.0, 0.1),
                edge("checkout", "shipping", 100.0, 10.0, 0.1),
            ],
            ..Observation::default()
        };
        let checkout = labels(&[("service", "checkout")]);
        assert_eq!(root_of("ServiceErrors", &checkout, &o, &[]), "payments");
        let origins = vec!["shipping".to_string()];
        assert_eq!(
            root_of("ServiceErrors", &checkout, &o, &origins),
            "shipping"
        );
    }

    #[test]
    fn latency_follows_the_edge_that_holds_the_time() {
        let o = Observation {
            window: BTreeMap::from([(
                "inventory".to_string(),
                Health {
                    calls: 100.0,
                    p99_seconds: Some(0.8),
                    ..Health::default()
                },
            )]),
            edges: vec![
                edge("inventory", "postgresql", 100.0, 0.0, 0.75),
                edge("inventory", "redis", 100.0, 0.0, 0.002),
            ],
            ..Observation::default()
        };
        let inventory = labels(&[("service", "inventory")]);
        assert_eq!(root_of("ServiceLatency", &inventory, &o, &[]), "postgresql");
    }

    #[test]
    fn incidents_keep_their_id_while_open_and_resolve_when_empty() {
        let mut incidents = Incidents::default();
        let a = AlertRef {
            rule: "ServiceErrors".into(),
            labels: labels(&[("service", "checkout")]),
        };
        let b = AlertRef {
            rule: "ServiceErrors".into(),
            labels: labels(&[("service", "payments")]),
        };
        let ids = incidents.update(1, vec![(a.clone(), "payments".into())]);
        let id = ids[&a].clone();
        let ids = incidents.update(
            2,
            vec![
                (a.clone(), "payments".into()),
                (b.clone(), "payments".into()),
            ],
        );
        assert_eq!(
            (ids[&a].as_str(), ids[&b].as_str()),
            (id.as_str(), id.as_str())
        );
        assert_eq!(incidents.open["payments"].affected, ["checkout"]);
        incidents.update(3, vec![]);
        assert!(incidents.open.is_empty());
        assert_eq!(incidents.recent[0].resolved_at, Some(3));
    }
}
