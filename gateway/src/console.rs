//! The web console (issue 18): plain HTML, CSS and ES modules from `gateway/console/`,
//! embedded in the binary at build time (no build step, nothing from a CDN), served at `/`
//! (index.html) and `/console/{file}`.
//!
//! The console is a client of the public API like any other: it signs in with a bearer token
//! kept in the tab's `sessionStorage` and calls `/v1/...` with it. These endpoints do no I/O
//! and need no credentials (the assets hold no data). Every answer carries [`CSP`], which
//! allows scripts, styles and requests to this origin only, no inline script or style, and no
//! framing; assets are revalidated with their ETag (`no-cache`), so a new binary is picked up
//! at once, and gzip-compressed when the browser accepts it.

use crate::error::GatewayError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The console's Content-Security-Policy: everything from this origin only, nothing inline
/// (no `'unsafe-inline'` for scripts or styles), no plugins, no framing, no `<base>`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file of `gateway/console/`.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path under `gateway/console/` (and under `/console/` in URLs).
    pub path: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)) }),*]
    };
}

/// Every file of `gateway/console/` (a test checks that none is missing from this list).
pub const ASSETS: &[Asset] = assets![
    "index.html",
    "console.css",
    "app.js",
    "ui.js",
    "pages/overview.js",
    "pages/revenue.js",
    "pages/retention.js",
    "pages/sessions.js",
    "pages/funnel.js",
    "pages/leaderboards.js",
    "pages/players.js",
    "pages/compliance.js",
    "pages/status.js",
];

/// The asset at `path`, if there is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The media type of a file, from its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The strong ETag of each asset (quoted hex SHA-256 prefix), in [`ASSETS`] order, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..32])).collect())
}

fn respond(req: &HttpRequest, path: &str) -> Result<HttpResponse, GatewayError> {
    let index = ASSETS
        .iter()
        .position(|a| a.path == path)
        .ok_or_else(|| GatewayError::NotFound(format!("no console file '{path}'")))?;
    let (asset, etag) = (&ASSETS[index], &etags()[index]);
    let not_modified = if_none_match(req, etag);
    let mut response = if not_modified { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        // Revalidate every time (cheap: 304 by ETag), so a new binary's console is used at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, HeaderValue::from_str(etag).expect("hex is a valid header value")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if not_modified {
        return Ok(response.finish());
    }
    Ok(response.content_type(content_type(asset.path)).body(asset.body))
}

/// Whether the request's `If-None-Match` names `etag` (or `*`).
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// `GET /`: the console's page.
pub async fn index(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    respond(&req, "index.html")
}

/// `GET /console/{file:.*}`: a script, style sheet or page module of the console.
pub async fn file(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, GatewayError> {
    respond(&req, &path)
}

/// Registers `/` and `/console/{file}`, gzip-compressed for browsers that accept it (only
/// these: the API's answers are compressed by nobody, as before).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(index)).wrap(actix_web::middleware::Compress::default()))
        .service(
            web::resource("/console/{file:.*}")
                .route(web::get().to(file))
                .wrap(actix_web::middleware::Compress::default()),
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::path::Path;

    fn console_dir() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/console"))
    }

    fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files_under(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_file_of_the_console_directory_is_embedded_and_typed() {
        let mut on_disk = Vec::new();
        files_under(console_dir(), "", &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new files of gateway/console/ to console::ASSETS");
        for a in ASSETS {
            assert_ne!(content_type(a.path), "application/octet-stream", "{} has no known media type", a.path);
        }
    }

    /// The tags of an HTML text: (name, attribute text), lower-cased.
    fn tags(html: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            rest = &rest[start + 1..];
            let Some(end) = rest.find('>') else { break };
            let tag = rest[..end].to_ascii_lowercase();
            rest = &rest[end + 1..];
            if tag.starts_with('/') || tag.starts_with('!') {
                continue;
            }
            let (name, attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag.as_str(), ""));
            out.push((name.to_string(), attrs.to_string()));
        }
        out
    }

    /// The CSP refuses inline script and style anyway; this keeps the page from relying on them
    /// (it would break silently in the browser).
    #[test]
    fn the_html_has_no_inline_script_handler_or_style() {
        let html = std::str::from_utf8(asset("index.html").unwrap().body).unwrap();
        let found = tags(html);
        assert!(found.iter().any(|(n, _)| n == "script"), "the parser found the script tag");
        let lower = html.to_ascii_lowercase();
        for (at, _) in lower.match_indices("<script") {
            let body = &lower[at..][lower[at..].find('>').unwrap() + 1..];
            assert!(body.starts_with("</script>"), "a script with a body: {}", &body[..body.len().min(40)]);
        }
        for (name, attrs) in &found {
            if name == "script" {
                assert!(attrs.contains("src=\"/console/"), "inline or foreign script: <script {attrs}>");
            }
            assert_ne!(name, "style", "inline <style>");
            for attr in attrs.split(|c: char| c.is_whitespace()) {
                let attr_name = attr.split('=').next().unwrap_or_default();
                assert!(!attr_name.starts_with("on"), "inline handler <{name} {attrs}>");
                assert_ne!(attr_name, "style", "inline style <{name} {attrs}>");
            }
            assert!(!attrs.contains("javascript:"), "javascript: URL in <{name} {attrs}>");
            assert!(
                !attrs.contains("http://") && !attrs.contains("https://"),
                "a resource from elsewhere: <{name} {attrs}>"
            );
        }
        // What the parser is checked against: a handler and an inline script are found.
        assert!(tags("<button onclick=\"x()\">").iter().any(|(_, a)| a.starts_with("onclick")));
        assert!(tags("<script>alert(1)</script>").iter().any(|(n, a)| n == "script" && !a.contains("src=")));
    }

    /// Scripts build the page with the DOM, never from markup strings (no injection from API
    /// data), and never evaluate text (the CSP forbids it).
    #[test]
    fn the_scripts_use_no_markup_strings_or_eval() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setAttribute('style'",
            ] {
                assert!(!text.contains(banned), "{} uses {banned}", a.path);
            }
            // The SVG namespace is a name, not a place things are loaded from.
            let text = text.replace("'http://www.w3.org/2000/svg'", "");
            assert!(!text.contains("http://") && !text.contains("https://"), "{} loads from elsewhere", a.path);
        }
    }

    /// Issue 18: the first page under 200 KB compressed. The first page loads every file (the
    /// shell imports all page modules at start), so all of them count.
    #[test]
    fn the_first_page_is_under_200_kb_gzipped() {
        let mut total = 0;
        for a in ASSETS {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(a.body).unwrap();
            total += gz.finish().unwrap().len();
        }
        assert!(total < 200 * 1024, "{total} bytes gzipped");
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let req =
            |v: &str| actix_web::test::TestRequest::get().insert_header((header::IF_NONE_MATCH, v)).to_http_request();
        assert!(if_none_match(&req("\"a\", W/\"b\""), "\"b\""));
        assert!(if_none_match(&req("*"), "\"b\""));
        assert!(!if_none_match(&req("\"a\""), "\"b\""));
    }
}
