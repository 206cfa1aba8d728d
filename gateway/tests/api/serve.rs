//! The gateway on a real socket: gzip inflated once, slow clients cut off.

use super::*;

fn http_exchange(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(&request).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

/// The harness's gateway served on a free local port: its address, its handle (to stop it) and
/// its task.
async fn serve(
    h: Harness,
) -> (std::net::SocketAddr, actix_web::dev::ServerHandle, actix_web::rt::task::JoinHandle<std::io::Result<()>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::try_unwrap(h.data.into_inner()).ok().expect("sole owner of the state");
    let server = gm_gateway::serve(listener, state).await.unwrap();
    let handle = server.handle();
    (addr, handle, actix_web::rt::spawn(server))
}

#[actix_web::test]
async fn serve_answers_on_a_real_socket_and_inflates_gzip_exactly_once() {
    let h = harness();
    let log = h.log.clone();
    let (addr, handle, running) = serve(h).await;

    let live = b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
    let body = gzip(json!({"events": [session_start("p1")]}).to_string().as_bytes());
    let mut post = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    let (live, posted) =
        tokio::task::spawn_blocking(move || (http_exchange(addr, live), http_exchange(addr, post))).await.unwrap();
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
    assert_eq!(log.records().len(), 1);

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// A client that sends its request head slowly (slowloris) is cut off after the head timeout
/// instead of holding a worker: `serve` bounds it by the request timeout, at most 5 s.
#[actix_web::test]
async fn a_client_sending_its_headers_slowly_is_disconnected() {
    let h = harness_configured(|c| c.request_timeout = Duration::from_secs(1));
    let (addr, handle, running) = serve(h).await;

    let (elapsed, answer) = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = std::time::Instant::now();
        // Half a request head, then nothing more.
        stream.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n").unwrap();
        let mut out = Vec::new();
        let read = stream.read_to_end(&mut out);
        assert!(read.is_ok(), "the server closed the connection rather than letting the read time out: {read:?}");
        (started.elapsed(), String::from_utf8_lossy(&out).to_string())
    })
    .await
    .unwrap();
    assert!(elapsed < Duration::from_secs(4), "cut off after {elapsed:?}");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}
