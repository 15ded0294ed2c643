//! The web UI's files, compiled into the binary, and the pages that answer with `index.html`
//! (the client router picks the view from the path; docs/ARCHITECTURE.md lists them).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/range.js", JS),
    asset!("js/services.js", JS),
    asset!("js/service.js", JS),
    asset!("js/search.js", JS),
    asset!("js/trace.js", JS),
    asset!("js/waterfall.js", JS),
    asset!("js/tracefile.js", JS),
    asset!("js/compare.js", JS),
    asset!("js/map.js", JS),
    asset!("js/metrics.js", JS),
    asset!("js/logs.js", JS),
    asset!("js/sql.js", JS),
    asset!("js/alerts.js", JS),
    asset!("js/rules.js", JS),
    asset!("js/silences.js", JS),
    asset!("js/notifications.js", JS),
];

/// What every UI response says about where the page may load from and send to.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/assets/{*name}", get(asset))
        .fallback(get(page))
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The `ETag` of an embedded file: a hash of its bytes, computed once per process.
fn etag(asset: &'static Asset) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
                for b in a.body {
                    hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
                }
                format!("\"{hash:016x}\"")
            })
            .collect()
    });
    let index = ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .expect("assets come from ASSETS");
    &tags[index]
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(value) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, value);
    }
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, asset.body).into_response()
}

async fn asset(Path(name): Path<String>, request: HeaderMap) -> Response {
    match find(&name) {
        Some(asset) => serve(asset, &request),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}

/// Whether `path` is one of the UI's pages (the client router's table, `js/app.js`).
fn is_page(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        [] | [""] => true,
        [
            "services" | "search" | "compare" | "map" | "explore" | "logs" | "sql" | "alerts"
            | "silences" | "notifications",
        ] => true,
        ["alerts", "rules"] | ["silences", "new"] | ["trace", "file"] => true,
        ["notifications", id] => !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()),
        ["services", name] => !name.is_empty(),
        ["trace", id] => id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => false,
    }
}

/// A page of the UI: `index.html`, whose router shows the view of the path; any other path is
/// a 404.
async fn page(uri: axum::http::Uri, request: HeaderMap) -> Response {
    let path = uri.path();
    if !is_page(path) {
        let message = format!("no page or endpoint {path}");
        let browser = request
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        return if path == "/api" || path.starts_with("/api/") {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({ "error": message })),
            )
                .into_response()
        } else if browser {
            // A browser gets the app, with its navigation, saying that there is no such page.
            let mut shell = serve(
                find("index.html").expect("index.html is embedded"),
                &request,
            );
            if shell.status() == StatusCode::OK {
                *shell.status_mut() = StatusCode::NOT_FOUND;
            }
            shell
        } else {
            (StatusCode::NOT_FOUND, message + "\n").into_response()
        };
    }
    serve(
        find("index.html").expect("index.html is embedded"),
        &request,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_routers_pages_answer_the_page() {
        for page in [
            "/",
            "/services",
            "/services/",
            "/services/check%20out",
            "/search",
            "/trace/0123456789abcdef0123456789ABCDEF",
            "/trace/file",
            "/compare",
            "/map",
            "/explore",
            "/logs",
            "/sql",
        ] {
            assert!(is_page(page), "{page}");
        }
        for other in [
            "/nope",
            "/trace/xyz",
            "/services/a/b",
            "/api/v1/nope",
            "/assets",
            "/metrics",
        ] {
            assert!(!is_page(other), "{other}");
        }
    }

    #[test]
    fn every_file_in_the_assets_folder_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let name = path.strip_prefix(&root).unwrap();
                    on_disk.push(name.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
