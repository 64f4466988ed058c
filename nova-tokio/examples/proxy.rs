//! Connecting through an HTTP CONNECT or SOCKS5 proxy.
//!
//! ```text
//! cargo run -p nova-tokio --example proxy -- socks5h://127.0.0.1:1080
//! cargo run -p nova-tokio --example proxy -- http://user:pass@127.0.0.1:3128
//! HTTPS_PROXY=http://127.0.0.1:3128 cargo run -p nova-tokio --example proxy
//! ```
//!
//! The server is a local mock echo server (nova-testkit) on 127.0.0.1, so the
//! example needs no network beyond loopback: it runs against any proxy you
//! have on this machine (pproxy, `ssh -D 1080`, Squid, dante, microsocks...).
//! The proxy comes from the first argument, or from the environment by
//! curl's rules (`ws_proxy`, `http_proxy`, `all_proxy`; `no_proxy`); with
//! none, the example says how to run one and exits.

use std::time::Duration;

use nova_testkit::{Behavior, MockServer};
use nova_tokio::nova_proto::proxy::Proxy;
use nova_tokio::{Config, Event};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start(Behavior::accept().echo())?;
    // `localhost`, not 127.0.0.1: no_proxy lists often hold the IP, and a
    // name shows who resolves it (the proxy for http:// and socks5h://).
    let url = format!("ws://localhost:{}/echo", server.addr().port());

    let proxy = match std::env::args().nth(1) {
        Some(arg) => Some(Proxy::parse(&arg)?),
        None => nova_tokio::nova_driver::proxy::from_env().proxy_for_url(&url)?,
    };
    let Some(proxy) = proxy else {
        println!("No proxy given. Run a local one and pass its URL, for example:");
        println!("  pip install pproxy && python3 -m pproxy -l http+socks5://127.0.0.1:1080/");
        println!("  cargo run -p nova-tokio --example proxy -- socks5h://127.0.0.1:1080");
        println!("  cargo run -p nova-tokio --example proxy -- http://127.0.0.1:1080");
        return Ok(());
    };
    println!("connecting to {url} through {:?} proxy {}:{}", proxy.kind(), proxy.host(), proxy.port());

    let config = Config::builder(&url)
        .proxy(Some(proxy.with_timeout(Duration::from_secs(3))))
        // One attempt: a demo should say what went wrong, not retry it.
        .no_reconnect()
        .build()?;
    let (handle, mut events) = nova_tokio::connect(config).await?;
    while let Some(event) = events.recv().await {
        match event {
            Event::Opened(_) => {
                println!("tunnel open, upgrade done");
                handle.send("hello through the proxy").await?;
            }
            Event::Message(message) => {
                println!("echoed: {:?}", message.as_text().unwrap_or_default());
                handle.close(1000, "done")?;
            }
            // A refused login, a proxy that is down or silent: the cause says which.
            Event::Disconnected { cause, .. } => println!("failed: {cause}"),
            Event::Closed(closed) => println!("closed: {:?}", closed.termination),
            _ => {}
        }
    }
    Ok(())
}
