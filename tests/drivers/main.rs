//! One behavioural suite for every Nova driver.
//!
//! The scenarios live in `suite.rs`, each written once against the
//! [`suite::Driver`] facade; [`driver_suite!`] makes one `#[test]` per
//! scenario and driver, so a failure names both (`tokio::backpressure`).
//! Every test talks to a mock server on 127.0.0.1 and every wait is bounded.

mod async_io;
mod mio;
mod proxy;
mod suite;
mod tokio;

/// One test per scenario for a driver, in a module named after it.
macro_rules! driver_suite {
    ($module:ident, $driver:ty) => {
        mod $module {
            use crate::suite;

            #[test]
            fn handshake() {
                suite::handshake::<$driver>();
            }
            #[test]
            fn echo_sizes() {
                suite::echo_sizes::<$driver>();
            }
            #[test]
            fn fragmented_messages() {
                suite::fragmented_messages::<$driver>();
            }
            #[test]
            fn ping_pong() {
                suite::ping_pong::<$driver>();
            }
            #[test]
            fn pong_timeout_reconnects() {
                suite::pong_timeout_reconnects::<$driver>();
            }
            #[test]
            fn latency_keeps_order() {
                suite::latency_keeps_order::<$driver>();
            }
            #[test]
            fn half_closed_connection_is_replaced() {
                suite::half_closed_connection_is_replaced::<$driver>();
            }
            #[test]
            fn last_message_and_end_in_one_segment() {
                suite::last_message_and_end_in_one_segment::<$driver>();
            }
            #[test]
            fn large_frames_in_pieces() {
                suite::large_frames_in_pieces::<$driver>();
            }
            #[test]
            fn one_way_cut_is_dead() {
                suite::one_way_cut_is_dead::<$driver>();
            }
            #[test]
            fn server_drop_reconnects_with_backoff() {
                suite::server_drop_reconnects_with_backoff::<$driver>();
            }
            #[test]
            fn refused_handshake() {
                suite::refused_handshake::<$driver>();
            }
            #[test]
            fn tls_with_a_custom_root() {
                suite::tls_with_a_custom_root::<$driver>();
            }
            #[test]
            fn bad_certificate() {
                suite::bad_certificate::<$driver>();
            }
            #[test]
            fn graceful_close() {
                suite::graceful_close::<$driver>();
            }
            #[test]
            fn server_close() {
                suite::server_close::<$driver>();
            }
            #[test]
            fn backpressure() {
                suite::backpressure::<$driver>();
            }
            #[test]
            fn concurrent_sessions() {
                suite::concurrent_sessions::<$driver>();
            }
            #[test]
            fn proxy_tunnels() {
                crate::proxy::proxy_tunnels::<$driver>();
            }
            #[test]
            fn proxy_refused_credentials_are_not_retried() {
                crate::proxy::proxy_refused_credentials_are_not_retried::<$driver>();
            }
            #[test]
            fn proxy_down_reconnects() {
                crate::proxy::proxy_down_reconnects::<$driver>();
            }
            #[test]
            fn silent_proxy_times_out() {
                crate::proxy::silent_proxy_times_out::<$driver>();
            }
            #[test]
            fn no_proxy_goes_direct() {
                crate::proxy::no_proxy_goes_direct::<$driver>();
            }
        }
    };
}

driver_suite!(tokio_driver, crate::tokio::Tokio);
driver_suite!(async_std_driver, crate::async_io::AsyncIoDriver<crate::async_io::AsyncStd>);
driver_suite!(smol_driver, crate::async_io::AsyncIoDriver<crate::async_io::Smol>);
driver_suite!(mio_driver, crate::mio::Mio);
