"""HTTP side of voipcore: metrics and health today; REST API and web dialer to come."""
