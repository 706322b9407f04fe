//! The web client at `/`: the page and every file under `web/assets/` are
//! served from the binary with their content types, a cache policy and a
//! Content-Security-Policy that allows nothing but the server itself.

use crate::common::TestServer;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

fn content_type_of(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        other => panic!("no content type expected for {name} ({other:?})"),
    }
}

async fn fetch(server: &TestServer, path: &str) -> reqwest::Response {
    let resp = server
        .http
        .get(server.url(path))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 200, "GET {path}");
    resp
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{} has no {name}", resp.url()))
        .to_str()
        .unwrap()
}

fn assert_protected(resp: &reqwest::Response) {
    assert_eq!(
        header(resp, "content-security-policy"),
        CSP,
        "{}",
        resp.url()
    );
    assert_eq!(header(resp, "x-content-type-options"), "nosniff");
    assert_eq!(header(resp, "x-frame-options"), "DENY");
}

#[tokio::test]
async fn the_page_and_every_asset_are_served_with_their_type_and_the_csp() {
    let server = TestServer::start().await;

    let page = fetch(&server, "/").await;
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert_protected(&page);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/assets/app.js">"#));
    // Nothing inline and nothing from elsewhere: the CSP would refuse it.
    assert!(!html.contains("<style"), "no inline style element");
    assert!(!html.contains(" style="), "no inline style attribute");
    assert!(!html.contains("<script>"), "no inline script");
    assert!(!html.contains("http://") && !html.contains("https://"));

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/assets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "the assets: {names:?}");
    for name in &names {
        let resp = fetch(&server, &format!("/assets/{name}")).await;
        assert_eq!(
            header(&resp, "content-type"),
            content_type_of(name),
            "{name}"
        );
        assert!(
            header(&resp, "cache-control").contains("max-age="),
            "{name} is cached for a while"
        );
        assert_protected(&resp);
        let served = resp.text().await.unwrap();
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(served == on_disk, "{name} is served as it is in web/assets");
        // Every module a script imports is served too.
        for import in served.split("from './").skip(1) {
            let file = import.split('\'').next().unwrap();
            assert!(names.iter().any(|n| n == file), "{name} imports {file}");
        }
    }
    // And the page names only assets that exist.
    for reference in html.split("\"/assets/").skip(1) {
        let file = reference.split('"').next().unwrap();
        assert!(names.iter().any(|n| n == file), "the page names {file}");
    }

    let (status, body) = server.get("/assets/nope.js", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = server.get("/assets/../Cargo.toml", None).await;
    assert_eq!(status, 404);
    // The API keeps its JSON errors beside the page.
    let (status, body) = server.get("/api/v1/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    server.shutdown().await;
}
