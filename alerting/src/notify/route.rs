//! Which routes an alert takes through the tree, and the aggregation group it joins there.

use super::config::{GroupBy, Route};
use super::matcher::all_match;
use crate::state::Labels;

/// A route's place in the tree: the child indexes from the root (the root is `[]`).
pub type RoutePath = Vec<usize>;

/// The routes that take an alert with `labels`, as Alertmanager walks the tree: the root takes
/// every alert; a matching child takes it (and its own children are tried) and stops the walk
/// unless it has `continue: true`; where no child matches, the route itself takes it.
pub fn routes(root: &Route, labels: &Labels) -> Vec<RoutePath> {
    let mut out = Vec::new();
    walk(root, labels, &mut Vec::new(), &mut out);
    out
}

fn walk(route: &Route, labels: &Labels, path: &mut RoutePath, out: &mut Vec<RoutePath>) {
    let mut matched = false;
    for (i, child) in route.routes.iter().enumerate() {
        if !all_match(&child.matchers, labels) {
            continue;
        }
        matched = true;
        path.push(i);
        walk(child, labels, path, out);
        path.pop();
        if !child.continue_matching {
            break;
        }
    }
    if !matched {
        out.push(path.clone());
    }
}

/// The route at `path`.
pub fn at<'r>(root: &'r Route, path: &[usize]) -> &'r Route {
    path.iter().fold(root, |route, &i| &route.routes[i])
}

/// The labels that make an alert's group on `route`: its values of the `group_by` labels (all
/// of its labels for `'...'`); labels it lacks are left out.
pub fn group_labels(route: &Route, labels: &Labels) -> Labels {
    match &route.group_by {
        GroupBy::All => labels.clone(),
        GroupBy::Labels(names) => names
            .iter()
            .filter_map(|n| Some((n.clone(), labels.get(n)?.clone())))
            .collect(),
    }
}

/// A group's key as Alertmanager writes it: the route's matchers from the root down, then the
/// group labels, e.g. `{}/{service="db"}:{incident="7"}`.
pub fn group_key(root: &Route, path: &[usize], group: &Labels) -> String {
    let mut route = root;
    let mut parts = vec![matchers_text(route)];
    for &i in path {
        route = &route.routes[i];
        parts.push(matchers_text(route));
    }
    let labels: Vec<String> = group.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{}:{{{}}}", parts.join("/"), labels.join(", "))
}

fn matchers_text(route: &Route) -> String {
    let m: Vec<String> = route.matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", m.join(","))
}
