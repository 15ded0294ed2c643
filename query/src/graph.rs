//! The dependency graph over a window, from the service-graph metrics ingest writes
//! (`spyglass.service_graph.calls|failures|duration`, one series per client → server edge and
//! connection type; see `ingest/src/spanmetrics.rs`).

use std::collections::BTreeMap;

use crate::QueryEngine;
use crate::error::Result;
use spyglass_store::spanmetrics as names;

use crate::health::{Family, Health, KeyColumn, Stepped, Totals, health, merge, overall_and_steps};

const GRAPH_FAMILY: Family = Family {
    calls: names::GRAPH_CALLS,
    errors: names::GRAPH_FAILURES,
    duration: names::GRAPH_DURATION,
    keys: [
        KeyColumn::Attribute(names::CLIENT),
        KeyColumn::Attribute(names::SERVER),
        KeyColumn::Attribute(names::CONNECTION_TYPE),
    ],
};

/// A node: a service that sent spans, or a virtual node (a database, a queue, an uninstrumented
/// peer) known only from its callers.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    /// `service`, `database`, `messaging_system` or `virtual_node`.
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub client: String,
    pub server: String,
    /// Empty for service-to-service calls; else the virtual node's kind.
    pub connection_type: String,
    /// Failures are the edge's errors; percentiles are the client's view of the call.
    pub health: Health,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dependencies {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl QueryEngine {
    pub async fn dependencies(&self, start: u64, end: u64) -> Result<Dependencies> {
        let _timer = self.stats.time(crate::QueryKind::Graph);
        let totals = self.family_totals(&GRAPH_FAMILY, None, start, end).await?;
        // Calls to a peer that answered none of them (it was down or silent) arrive as a
        // virtual edge named after it; when that peer is a service seen elsewhere in the graph,
        // they are calls of the service edge (its timeouts count as its failures).
        let services: std::collections::BTreeSet<&str> = totals
            .keys()
            .filter(|(_, _, connection_type)| connection_type.is_empty())
            .flat_map(|(client, server, _)| [client.as_str(), server.as_str()])
            .collect();
        // Series of one edge from several writers (restarts) are one edge.
        let mut edges: BTreeMap<(String, String, String), Totals> = BTreeMap::new();
        for ((client, server, connection_type), t) in &totals {
            let connection_type = if services.contains(server.as_str()) {
                String::new()
            } else {
                connection_type.clone()
            };
            merge(
                edges
                    .entry((client.clone(), server.clone(), connection_type))
                    .or_default(),
                t,
            );
        }
        let mut nodes: BTreeMap<String, String> = BTreeMap::new();
        let edges: Vec<Edge> = edges
            .into_iter()
            .map(|((client, server, connection_type), t)| {
                nodes
                    .entry(client.clone())
                    .or_insert_with(|| "service".into());
                let server_kind = if connection_type.is_empty() {
                    "service".to_string()
                } else {
                    connection_type.clone()
                };
                // A node seen as a real service anywhere stays a service.
                let entry = nodes.entry(server.clone()).or_insert(server_kind.clone());
                if server_kind == "service" {
                    *entry = server_kind;
                }
                Edge {
                    client,
                    server,
                    connection_type,
                    health: health(&t, start, end),
                }
            })
            .collect();
        Ok(Dependencies {
            nodes: nodes
                .into_iter()
                .map(|(name, kind)| Node { name, kind })
                .collect(),
            edges,
        })
    }
}

impl QueryEngine {
    /// The edges into `server` (its callers' calls, one edge per caller and connection type),
    /// over `[start, end]` and, with `step`, per step: how a peer that sends nothing itself is
    /// seen.
    pub async fn calls_into(
        &self,
        server: &str,
        start: u64,
        end: u64,
        step: Option<u64>,
    ) -> Result<Vec<Stepped<Edge>>> {
        let _timer = self.stats.time(crate::QueryKind::Graph);
        let totals = self
            .family_totals_stepped(&GRAPH_FAMILY, None, start, end, step)
            .await?;
        // Series of one edge from several writers (restarts) are one edge.
        let mut edges: BTreeMap<(String, String), Vec<Totals>> = BTreeMap::new();
        for ((client, to, connection_type), steps) in totals {
            if to != server {
                continue;
            }
            let into = edges.entry((client, connection_type)).or_default();
            if into.len() < steps.len() {
                into.resize_with(steps.len(), Totals::default);
            }
            for (into, from) in into.iter_mut().zip(&steps) {
                merge(into, from);
            }
        }
        Ok(edges
            .into_iter()
            .map(|((client, connection_type), steps)| {
                let (health, steps) = overall_and_steps(&steps, start, end, step);
                Stepped {
                    item: Edge {
                        client,
                        server: server.to_string(),
                        connection_type,
                        health,
                    },
                    steps,
                }
            })
            .collect())
    }
}
