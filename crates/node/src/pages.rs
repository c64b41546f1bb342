//! Plain HTTP pages served on the RPC address beside JSON-RPC: the block explorer
//! (`GET /explorer`, and `GET /` from a browser) and the metrics (`GET /metrics`).
//!
//! A [`tower`] layer in front of the JSON-RPC service answers those requests itself and passes
//! everything else through untouched. The explorer is one static page (`explorer.html`) whose
//! script reads the chain through the node's own JSON-RPC, so it shows exactly what the RPC
//! serves and needs no server-side rendering.
//!
//! Invariants:
//! - JSON-RPC over HTTP (`POST`) and WebSocket upgrades (`GET` with `Upgrade: websocket`) are
//!   never intercepted.
//! - The page never puts chain data into HTML as markup: its script builds every element with
//!   `textContent`, so an asset symbol or any other on-chain string cannot inject script.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CACHE_CONTROL, CONTENT_TYPE, UPGRADE};
use http::{Method, StatusCode};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use tower::{Layer, Service};

use crate::node::Node;

/// The explorer page.
pub const EXPLORER_HTML: &str = include_str!("explorer.html");

/// Serves the pages in front of an inner service.
#[derive(Clone)]
pub struct PagesLayer {
    node: Arc<Node>,
}

impl PagesLayer {
    /// Pages for `node`.
    pub fn new(node: Arc<Node>) -> PagesLayer {
        PagesLayer { node }
    }
}

impl<S> Layer<S> for PagesLayer {
    type Service = Pages<S>;

    fn layer(&self, inner: S) -> Pages<S> {
        Pages {
            inner,
            node: self.node.clone(),
        }
    }
}

/// The service of [`PagesLayer`].
#[derive(Clone)]
pub struct Pages<S> {
    inner: S,
    node: Arc<Node>,
}

/// Which page a request asks for, if any.
#[derive(Debug, PartialEq, Eq)]
enum Page {
    Explorer,
    Metrics,
}

fn page_of<B>(req: &HttpRequest<B>) -> Option<Page> {
    if req.method() != Method::GET || req.headers().contains_key(UPGRADE) {
        return None;
    }
    match req.uri().path() {
        "/" | "/explorer" | "/explorer/" => Some(Page::Explorer),
        "/metrics" => Some(Page::Metrics),
        _ => None,
    }
}

fn respond(content_type: &'static str, body: String) -> HttpResponse {
    let mut response = HttpResponse::new(HttpBody::from(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

impl<S, B> Service<HttpRequest<B>> for Pages<S>
where
    S: Service<HttpRequest<B>, Response = HttpResponse>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: HttpRequest<B>) -> Self::Future {
        match page_of(&req) {
            Some(Page::Explorer) => {
                let page = respond("text/html; charset=utf-8", EXPLORER_HTML.to_string());
                Box::pin(async move { Ok(page) })
            }
            Some(Page::Metrics) => {
                let page = respond(crate::metrics::CONTENT_TYPE, self.node.render_metrics());
                Box::pin(async move { Ok(page) })
            }
            None => {
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> HttpRequest<()> {
        let mut req = HttpRequest::new(());
        *req.uri_mut() = path.parse().expect("uri");
        req
    }

    #[test]
    fn only_plain_gets_of_the_page_paths_are_pages() {
        assert_eq!(page_of(&get("/")), Some(Page::Explorer));
        assert_eq!(page_of(&get("/explorer")), Some(Page::Explorer));
        assert_eq!(page_of(&get("/metrics")), Some(Page::Metrics));
        assert_eq!(page_of(&get("/other")), None);
        let mut post = get("/");
        *post.method_mut() = Method::POST;
        assert_eq!(page_of(&post), None);
        let mut ws = get("/");
        ws.headers_mut()
            .insert(UPGRADE, http::HeaderValue::from_static("websocket"));
        assert_eq!(page_of(&ws), None);
    }

    #[test]
    fn the_explorer_builds_its_elements_without_markup_from_the_chain() {
        // Every piece of chain data goes through `text(...)`/`textContent`; `innerHTML` is
        // only ever cleared.
        for line in EXPLORER_HTML.lines() {
            if line.contains("innerHTML") {
                assert!(line.contains("innerHTML = \"\""), "{line}");
            }
        }
        assert!(EXPLORER_HTML.contains("pb_chainInfo"));
        assert!(EXPLORER_HTML.contains("pb_getBlockByHeight"));
    }
}
