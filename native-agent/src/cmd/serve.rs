//! `proxyscope serve`: serve the built web explainer (`scripts/build-web.sh` → `web/dist`).
//!
//! The app is fully client-side, so this is a plain static file server: GET/HEAD only, paths are
//! confined to `--dir`, and `.wasm` goes out as `application/wasm` (browsers refuse streaming
//! compilation of WebAssembly served under any other type).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use clap::Args;

use crate::error::CliError;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding the built app (index.html, proxyscope_web.js, proxyscope_web_bg.wasm).
    #[arg(long, default_value = "web/dist")]
    pub dir: PathBuf,
}

/// Content type by extension; unknown files are served as bytes rather than guessed.
pub fn mime_for(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        Some("yaml" | "yml") => "text/yaml; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Map a request path to a file under `root`, refusing anything that could leave it.
/// Percent-escapes are decoded first so `%2e%2e` cannot smuggle a `..` past the check.
pub fn resolve(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(uri_path)?;
    let rel = decoded.trim_start_matches('/');
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_string()
    };
    let mut out = root.to_path_buf();
    for c in Path::new(&rel).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    // A NUL or backslash has no business in a path of this app and confuses some file systems.
    (!s.contains('\0') && !s.contains('\\')).then_some(s)
}

async fn serve_file(State(root): State<Arc<PathBuf>>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let Some(path) = resolve(&root, uri.path()) else {
        return (StatusCode::BAD_REQUEST, "bad path\n").into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut r = if method == Method::HEAD {
                let len = bytes.len();
                let mut r = Response::new(Body::empty());
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                r
            } else {
                Response::new(Body::from(bytes))
            };
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(mime_for(&path)),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, "not found\n").into_response()
        }
        // A directory without index.html, or permissions: not the client's fault but nothing to show.
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

pub fn router(dir: PathBuf) -> Router {
    Router::new().fallback(serve_file).with_state(Arc::new(dir))
}

/// Bind first (so tests can use port 0 and learn the real port), then hand back the server future.
pub async fn bind(
    addr: SocketAddr,
    dir: PathBuf,
) -> std::io::Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(dir);
    Ok((local, async move { axum::serve(listener, app).await }))
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    if !args.dir.join("index.html").is_file() {
        return Err(CliError::BadInput(format!(
            "--dir {}: no index.html there (build the app with scripts/build-web.sh)",
            args.dir.display()
        )));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Internal(format!("tokio runtime: {e}")))?;
    rt.block_on(async {
        let (addr, server) = bind(args.listen, args.dir.clone())
            .await
            .map_err(|e| CliError::BadInput(format!("--listen {}: {e}", args.listen)))?;
        println!("listening on http://{addr}/");
        server
            .await
            .map_err(|e| CliError::Internal(format!("server: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn paths_stay_inside_the_root() {
        let root = Path::new("/srv/app");
        assert_eq!(
            resolve(root, "/"),
            Some(PathBuf::from("/srv/app/index.html"))
        );
        assert_eq!(
            resolve(root, "/proxyscope_web_bg.wasm"),
            Some(PathBuf::from("/srv/app/proxyscope_web_bg.wasm"))
        );
        assert_eq!(
            resolve(root, "/a/./b.js"),
            Some(PathBuf::from("/srv/app/a/b.js"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/%2e%2e/etc/passwd"), None);
        assert_eq!(resolve(root, "/a/%2E%2E/%2e%2e/x"), None);
        assert_eq!(resolve(root, "/x%00.html"), None);
        assert_eq!(resolve(root, "/bad%zz"), None);
        assert_eq!(resolve(root, "/..%5c..%5cwin.ini"), None);
    }

    #[test]
    fn wasm_and_js_types() {
        assert_eq!(mime_for(Path::new("a.wasm")), "application/wasm");
        assert_eq!(
            mime_for(Path::new("a.JS")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            mime_for(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(mime_for(Path::new("noext")), "application/octet-stream");
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test]
    async fn serves_files_with_their_types() {
        let dir =
            std::env::temp_dir().join(format!("proxyscope-serve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<!DOCTYPE html>hi").unwrap();
        std::fs::write(dir.join("app_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let (addr, server) = bind("127.0.0.1:0".parse().unwrap(), dir.clone())
            .await
            .unwrap();
        let task = tokio::spawn(server);

        let index = get(addr, "/").await;
        assert!(index.starts_with("HTTP/1.1 200"), "{index}");
        assert!(
            index
                .to_ascii_lowercase()
                .contains("content-type: text/html; charset=utf-8")
        );
        assert!(index.ends_with("<!DOCTYPE html>hi"));

        let wasm = get(addr, "/app_bg.wasm").await;
        assert!(
            wasm.to_ascii_lowercase()
                .contains("content-type: application/wasm"),
            "{wasm}"
        );

        assert!(get(addr, "/missing.js").await.starts_with("HTTP/1.1 404"));
        assert!(
            get(addr, "/%2e%2e/secret")
                .await
                .starts_with("HTTP/1.1 400")
        );

        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
