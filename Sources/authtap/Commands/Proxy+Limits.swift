import ArgumentParser
import AuthtapProxy

/// `authtap proxy`'s timeouts and connection cap.
struct LimitOptions: ParsableArguments {
    @Option(help: "Seconds for a client to send a whole request head, plain or inside intercepted TLS (0: off).")
    var requestHeadTimeout: Double = ProxyLimits().requestHeadTimeout

    @Option(help: "Seconds a kept-alive client connection may wait for its next request (0: off).")
    var clientIdleTimeout: Double = ProxyLimits().clientIdleTimeout

    @Option(help: "Seconds an idle upstream connection is kept in the pool (0: off).")
    var upstreamIdleTimeout: Double = ProxyLimits().upstreamIdleTimeout

    @Option(help: "Seconds a relayed (not intercepted) CONNECT tunnel may pass no byte either way (0: off).")
    var tunnelIdleTimeout: Double = ProxyLimits().tunnelIdleTimeout

    @Option(help: "Seconds for a TLS handshake: the client's in an intercepted tunnel, and each upstream's (0: off).")
    var tlsHandshakeTimeout: Double = ProxyLimits().tlsHandshakeTimeout

    @Option(
        help: """
            Client connections open at once; past it accepting waits until some close \
            (default: half the open-files limit, less a margin).
            """)
    var maxConnections: Int?

    func validate() throws {
        let timeouts = [
            ("--request-head-timeout", requestHeadTimeout), ("--client-idle-timeout", clientIdleTimeout),
            ("--upstream-idle-timeout", upstreamIdleTimeout), ("--tunnel-idle-timeout", tunnelIdleTimeout),
            ("--tls-handshake-timeout", tlsHandshakeTimeout),
        ]
        for (flag, value) in timeouts where !(value >= 0 && value <= 31_536_000) {
            throw ValidationError("\(flag) must be between 0 (off) and 31536000 seconds")
        }
        if let maxConnections, maxConnections < 1 { throw ValidationError("--max-connections must be ≥ 1") }
    }

    var value: ProxyLimits {
        var limits = ProxyLimits()
        limits.requestHeadTimeout = requestHeadTimeout
        limits.clientIdleTimeout = clientIdleTimeout
        limits.upstreamIdleTimeout = upstreamIdleTimeout
        limits.tunnelIdleTimeout = tunnelIdleTimeout
        limits.tlsHandshakeTimeout = tlsHandshakeTimeout
        limits.maxConnections = maxConnections ?? 0
        return limits
    }
}
