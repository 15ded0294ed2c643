//! Alertmanager's API v2 under `/alertmanager/api/v2`, in the shapes of its OpenAPI document, so
//! that `amtool`, Grafana's Alertmanager data source and a Prometheus that sends alerts use
//! `http://HOST:8080/alertmanager` as an Alertmanager:
//! `alerts` (GET, POST), `alerts/groups`, `silences` (GET, POST), `silence/{id}` (GET, DELETE),
//! `status` and `receivers`. Times are RFC 3339; errors are a JSON string, as Alertmanager's.

use std::sync::OnceLock;
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use spyglass_alerting::Labels;
use spyglass_alerting::notify::matcher::{self, Matcher, Op};
use spyglass_alerting::notify::{
    AlertView, DispatchView, Notifier, Silence, SilenceMatcher, SilenceState, rfc3339,
};

use crate::params::Params;
use crate::state::AppState;

const PREFIX: &str = "/alertmanager/api/v2";

/// When the server started, for `status`'s `uptime`.
static STARTED: OnceLock<u64> = OnceLock::new();

pub(crate) fn routes() -> Router<AppState> {
    STARTED.get_or_init(crate::params::now_nanos);
    Router::new()
        .route(&format!("{PREFIX}/alerts"), get(alerts).post(post_alerts))
        .route(&format!("{PREFIX}/alerts/groups"), get(groups))
        .route(
            &format!("{PREFIX}/silences"),
            get(silences).post(post_silence),
        )
        .route(
            &format!("{PREFIX}/silence/{{id}}"),
            get(silence).delete(expire_silence),
        )
        .route(&format!("{PREFIX}/status"), get(status))
        .route(&format!("{PREFIX}/receivers"), get(receivers))
}

/// An error as Alertmanager answers one: a JSON string.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(Value::String(self.1))).into_response()
    }
}

type Answer = Result<Response, Refusal>;

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

fn bad(message: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, message)
}

fn notifier(state: &AppState) -> Result<&Notifier, Refusal> {
    state
        .alerting()
        .ok()
        .and_then(|a| a.notifier())
        .ok_or_else(|| {
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "notifications are starting; retry shortly",
            )
        })
}

async fn view(notifier: &Notifier) -> Result<DispatchView, Refusal> {
    notifier.view().await.ok_or_else(|| {
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the notification dispatcher has stopped",
        )
    })
}

/// The filters that `alerts` and `alerts/groups` take.
struct AlertFilter {
    active: bool,
    silenced: bool,
    inhibited: bool,
    matchers: Vec<Matcher>,
    receiver: Option<Matcher>,
}

impl AlertFilter {
    fn parse(raw: Option<&str>) -> Result<Self, Refusal> {
        // Other parameters are ignored, as Alertmanager ignores them (newer clients send more).
        let params = Params::parse(raw);
        let flag = |name: &str| match params.get(name) {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(bad(format!("{name} must be true or false, not {other:?}"))),
        };
        let mut matchers = Vec::new();
        for text in params.all("filter") {
            matchers.extend(matcher::parse(text).map_err(|e| bad(format!("filter: {e}")))?);
        }
        let receiver = params
            .get("receiver")
            .map(|re| Matcher::new("receiver", Op::Regex, re))
            .transpose()
            .map_err(|e| bad(format!("receiver: {e}")))?;
        Ok(Self {
            active: flag("active")?,
            silenced: flag("silenced")?,
            inhibited: flag("inhibited")?,
            matchers,
            receiver,
        })
    }

    fn receiver_matches(&self, name: &str) -> bool {
        self.receiver
            .as_ref()
            .is_none_or(|m| m.matches(&Labels::from([("receiver".to_owned(), name.to_owned())])))
    }

    fn keeps(&self, a: &AlertView) -> bool {
        let silenced = !a.silenced_by.is_empty();
        let inhibited = !a.inhibited_by.is_empty();
        // As Alertmanager: a muted alert is hidden by either flag it fails.
        let state_ok = if silenced || inhibited {
            (!silenced || self.silenced) && (!inhibited || self.inhibited)
        } else {
            self.active
        };
        state_ok
            && matcher::all_match(&self.matchers, &a.alert.labels)
            && a.receivers.iter().any(|r| self.receiver_matches(r))
    }
}

fn fingerprint(f: u64) -> String {
    format!("{f:016x}")
}

fn gettable_alert(a: &AlertView) -> Value {
    let muted = !a.silenced_by.is_empty() || !a.inhibited_by.is_empty();
    let inhibited_by: Vec<String> = a.inhibited_by.iter().map(|&f| fingerprint(f)).collect();
    json!({
        "labels": a.alert.labels,
        "annotations": a.alert.annotations,
        "startsAt": rfc3339(a.alert.starts_at),
        "endsAt": rfc3339(a.alert.ends_at),
        "updatedAt": rfc3339(a.updated_at),
        "generatorURL": a.alert.generator_url,
        "fingerprint": fingerprint(a.fingerprint),
        "receivers": a.receivers.iter().map(|r| json!({ "name": r })).collect::<Vec<_>>(),
        "status": {
            "state": if muted { "suppressed" } else { "active" },
            "silencedBy": a.silenced_by,
            "inhibitedBy": inhibited_by,
            "mutedBy": [],
        },
    })
}

/// `GET alerts`: the firing alerts, filtered by `filter` matchers, `receiver` (a regex) and
/// `active` / `silenced` / `inhibited`.
async fn alerts(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Answer {
    let filter = AlertFilter::parse(raw.as_deref())?;
    let view = view(notifier(&state)?).await?;
    let alerts: Vec<Value> = view
        .alerts
        .iter()
        .filter(|a| filter.keeps(a))
        .map(gettable_alert)
        .collect();
    Ok(Json(alerts).into_response())
}

/// `GET alerts/groups`: the aggregation groups with their alerts, filtered as `alerts` is.
async fn groups(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Answer {
    let filter = AlertFilter::parse(raw.as_deref())?;
    let view = view(notifier(&state)?).await?;
    let by_fingerprint: std::collections::HashMap<u64, &AlertView> =
        view.alerts.iter().map(|a| (a.fingerprint, a)).collect();
    let groups: Vec<Value> = view
        .groups
        .iter()
        .filter(|g| filter.receiver_matches(&g.receiver))
        .filter_map(|g| {
            let alerts: Vec<Value> = g
                .alerts
                .iter()
                .filter_map(|f| by_fingerprint.get(f))
                .filter(|a| filter.keeps(a))
                .map(|a| gettable_alert(a))
                .collect();
            (!alerts.is_empty()).then(|| {
                json!({
                    "labels": g.labels,
                    "receiver": { "name": g.receiver },
                    "alerts": alerts,
                })
            })
        })
        .collect();
    Ok(Json(groups).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostableAlert {
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    #[serde(rename = "startsAt", default)]
    starts_at: Option<String>,
    #[serde(rename = "endsAt", default)]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", default)]
    generator_url: String,
}

fn time_field(name: &str, text: Option<&str>) -> Result<u64, String> {
    match text {
        // Go's zero time, as amtool sends an unset one (`0001-01-01T00:00:00.000Z`).
        None | Some("") => Ok(0),
        Some(t) if t.starts_with("0001-01-01T") => Ok(0),
        Some(t) => {
            crate::params::rfc3339(t).ok_or_else(|| format!("{name} {t:?} is not an RFC 3339 time"))
        }
    }
}

fn to_alert(
    i: usize,
    posted: PostableAlert,
    now: u64,
) -> Result<spyglass_alerting::notify::Alert, String> {
    let at = |problem: String| format!("alert {i}: {problem}");
    if posted.labels.is_empty() {
        return Err(at("at least one label pair is required".into()));
    }
    for (name, value) in &posted.labels {
        if !spyglass_alerting::is_label_name(name) {
            return Err(at(format!("invalid label name {name:?}")));
        }
        if value.is_empty() {
            return Err(at(format!("label {name:?} has an empty value")));
        }
    }
    let ends_at = time_field("endsAt", posted.ends_at.as_deref()).map_err(at)?;
    // No start: now, or its end when that is past (as Alertmanager does).
    let starts_at = match time_field("startsAt", posted.starts_at.as_deref()).map_err(at)? {
        0 if ends_at != 0 && ends_at < now => ends_at,
        0 => now,
        t => t,
    };
    if ends_at != 0 && ends_at < starts_at {
        return Err(at("startsAt must be before endsAt".into()));
    }
    Ok(spyglass_alerting::notify::Alert {
        labels: posted.labels,
        annotations: posted.annotations,
        starts_at,
        ends_at,
        generator_url: posted.generator_url,
        evidence: Default::default(),
    })
}

/// `POST alerts`: alerts from a Prometheus, routed as Spyglass's own are. As Alertmanager, the
/// valid ones are taken even when others are not; then the answer is 400 naming each refused
/// one (a Prometheus does not send a batch again after a 400).
async fn post_alerts(State(state): State<AppState>, body: Bytes) -> Answer {
    let notifier = notifier(&state)?.clone();
    let posted: Vec<PostableAlert> = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body is not a list of alerts: {e}")))?;
    let now = notifier.now();
    let mut alerts = Vec::with_capacity(posted.len());
    let mut refused = Vec::new();
    for (i, p) in posted.into_iter().enumerate() {
        match to_alert(i, p, now) {
            Ok(alert) => alerts.push(alert),
            Err(problem) => refused.push(problem),
        }
    }
    notifier.send(alerts).await;
    if refused.is_empty() {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(bad(refused.join("; ")))
    }
}

fn gettable_silence(s: &Silence, now: u64) -> Value {
    json!({
        "id": s.id,
        "status": { "state": s.state(now).as_str() },
        "updatedAt": rfc3339(s.updated_at),
        "matchers": s.matchers,
        "startsAt": rfc3339(s.starts_at),
        "endsAt": rfc3339(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

/// Whether a silence's equality matchers, taken as labels, satisfy every filter matcher (as
/// Alertmanager filters silences).
fn silence_matches(s: &Silence, filter: &[Matcher]) -> bool {
    let labels: Labels = s
        .matchers
        .iter()
        .filter(|m| m.is_equal && !m.is_regex)
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    matcher::all_match(filter, &labels)
}

/// `GET silences`: active ones first (ending soonest first), then pending (starting soonest),
/// then expired (latest first).
async fn silences(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Answer {
    let notifier = notifier(&state)?;
    let params = Params::parse(raw.as_deref());
    let mut filter = Vec::new();
    for text in params.all("filter") {
        filter.extend(matcher::parse(text).map_err(|e| bad(format!("filter: {e}")))?);
    }
    let listed = notifier.silences(|silences, now| {
        silences.collect_garbage(now);
        let mut chosen: Vec<&Silence> = silences
            .all()
            .iter()
            .filter(|s| silence_matches(s, &filter))
            .collect();
        chosen.sort_by_key(|s| match s.state(now) {
            SilenceState::Active => (0, s.ends_at as i128),
            SilenceState::Pending => (1, s.starts_at as i128),
            SilenceState::Expired => (2, -(s.ends_at as i128)),
        });
        chosen
            .into_iter()
            .map(|s| gettable_silence(s, now))
            .collect::<Vec<_>>()
    });
    Ok(Json(listed).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostableSilence {
    #[serde(default)]
    id: String,
    matchers: Vec<SilenceMatcher>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "createdBy")]
    created_by: String,
    comment: String,
}

/// `POST silences`: creates a silence, or changes the one with the given id, by Alertmanager's
/// rules: an expired one, or one whose matchers change, is not changed: the expired one stays,
/// the other is expired, and a new silence (a new id) is made. A new silence's start in the
/// past becomes now; an active one keeps its start. Answers `{"silenceID": …}`.
async fn post_silence(State(state): State<AppState>, body: Bytes) -> Answer {
    let notifier = notifier(&state)?;
    let posted: PostableSilence = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("the body is not a silence: {e}")))?;
    let time = |name: &str, text: &str| {
        crate::params::rfc3339(text)
            .ok_or_else(|| bad(format!("{name} {text:?} is not an RFC 3339 time")))
    };
    let starts_at = time("startsAt", &posted.starts_at)?;
    let ends_at = time("endsAt", &posted.ends_at)?;
    let id = notifier.silences(|silences, now| {
        let mut id = posted.id;
        let mut start = starts_at.max(now);
        let mut replaced = None;
        if !id.is_empty() {
            let Some(existing) = silences.get(&id) else {
                return Err(refuse(
                    StatusCode::NOT_FOUND,
                    format!("no silence has id {id}"),
                ));
            };
            match existing.state(now) {
                SilenceState::Expired => id.clear(),
                _ if existing.matchers != posted.matchers => {
                    replaced = Some(std::mem::take(&mut id))
                }
                SilenceState::Active => start = existing.starts_at,
                SilenceState::Pending => {}
            }
        }
        let silence = Silence {
            id,
            matchers: posted.matchers,
            starts_at: start,
            ends_at,
            updated_at: now,
            created_by: posted.created_by,
            comment: posted.comment,
        };
        let new_id = silences.put(silence, now).map_err(bad)?;
        if let Some(old) = replaced {
            silences.expire(&old, now).map_err(bad)?;
        }
        Ok(new_id)
    })?;
    Ok(Json(json!({ "silenceID": id })).into_response())
}

/// `GET silence/{id}`.
async fn silence(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    notifier(&state)?.silences(|silences, now| match silences.get(&id) {
        Some(s) => Ok(Json(gettable_silence(s, now)).into_response()),
        None => Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no silence has id {id}"),
        )),
    })
}

/// `DELETE silence/{id}`: expires it now.
async fn expire_silence(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    notifier(&state)?.silences(|silences, now| {
        if silences.get(&id).is_none() {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("no silence has id {id}"),
            ));
        }
        silences.expire(&id, now).map_err(bad)?;
        Ok(StatusCode::OK.into_response())
    })
}

/// `GET status`: the config (secrets hidden), the version, the start time; no cluster.
async fn status(State(state): State<AppState>) -> Answer {
    let notifier = notifier(&state)?;
    let started = STARTED.get().copied().unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    Ok(Json(json!({
        "cluster": { "name": "", "status": "disabled", "peers": [] },
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "none (Spyglass)",
        },
        "config": { "original": notifier.config().original },
        "uptime": rfc3339(started),
    }))
    .into_response())
}

/// `GET receivers`.
async fn receivers(State(state): State<AppState>) -> Answer {
    let names: Vec<Value> = notifier(&state)?
        .config()
        .receivers
        .iter()
        .map(|r| json!({ "name": r.name }))
        .collect();
    Ok(Json(names).into_response())
}
