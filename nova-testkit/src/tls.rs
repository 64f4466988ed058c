//! Certificates and rustls configurations for TLS tests (being written).
