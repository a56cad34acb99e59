import AuthtapModel

extension TLSFault {
    /// Failed handshakes in the packet capture that no recorded exchange explains.
    func unmatchedHandshakes(_ c: inout RuleContext) {
        for (i, h) in c.handshakes.enumerated() where !c.usedHandshakes.contains(i) && h.outcome != .completed {
            // TCP only: a port probe.
            if h.outcome == .closedDuringHandshake && h.sni == nil && h.versionsOffered.isEmpty { continue }
            let server = "\(h.server.contains(":") ? "[\(h.server)]" : h.server):\(h.serverPort)"
            let client = "\(h.client):\(h.clientPort)"
            let name = h.sni.map { " (\($0))" } ?? ""
            let toProxy = c.proxyPort != nil && h.serverPort == c.proxyPort
            guard let text = prose(h, server: server, client: client, name: name, toProxy: toProxy, caPath: c.caPath)
            else { continue }
            let (title, explanation, fix) = text
            let packets = "\(h.firstPacket)-\(h.lastPacket)"
            c.findings.append(
                Finding(
                    rule: id, severity: .error, title: title,
                    explanation: explanation + " (packets \(packets) of the capture)", fix: fix,
                    exchanges: [], transaction: nil,
                    evidence: [
                        "packets": packets, "client": client, "server": server, "outcome": h.outcome.rawValue,
                        "sni": h.sni ?? "(none)", "alert": h.alert ?? "(none)",
                    ]))
        }
    }

    /// Title, explanation and fix for one failed handshake; nil for one that completed.
    func prose(
        _ h: HandshakeRecord, server: String, client: String, name: String, toProxy: Bool,
        caPath: String
    ) -> (String, String, String)? {
        switch h.outcome {
        case .refused, .synUnanswered:
            return unreachedProse(h, server: server, client: client)
        case .noServerHello, .clientHelloRetransmitted, .versionMismatch:
            return unansweredHelloProse(h, server: server, name: name)
        case .alert:
            return alertProse(h, server: server, client: client, name: name, toProxy: toProxy, caPath: caPath)
        case .resetDuringHandshake, .closedDuringHandshake:
            return droppedProse(h, server: server, client: client, name: name, toProxy: toProxy)
        case .completed:
            return nil
        }
    }

    /// TCP never connected: refused, or the SYNs went unanswered.
    private func unreachedProse(_ h: HandshakeRecord, server: String, client: String) -> (String, String, String) {
        if h.outcome == .refused {
            return (
                "Connection to \(server) refused",
                """
                The SYN from \(client) was answered with a RST: nothing listens on \(server), or a firewall \
                rejects it.
                """,
                "Check that the server runs on that port and the host/port in the URL."
            )
        }
        return (
            "No answer to the connection attempt to \(server)",
            """
            \(client) sent SYNs to \(server) that got no answer: \(h.detail). A firewall drops the packets, or \
            the address is wrong.
            """,
            "Check routes and firewalls towards \(server) (and that the app resolves the right address)."
        )
    }

    /// TCP connected but the ClientHello got no usable answer: none at all, or no version in common.
    private func unansweredHelloProse(_ h: HandshakeRecord, server: String, name: String) -> (String, String, String) {
        if h.outcome == .versionMismatch {
            return (
                "No TLS version in common with \(server)\(name)",
                "\(h.detail). Offered: \(h.versionsOffered.joined(separator: ", ")).",
                "Enable TLS 1.2/1.3 on both sides."
            )
        }
        return (
            "ClientHello to \(server)\(name) never answered",
            "TCP connected, the client sent its ClientHello, and the server never answered: \(h.detail).",
            """
            Look for a middlebox that filters TLS by SNI or drops large ClientHellos (post-quantum key shares \
            make them larger than one MTU), or a server that is not TLS on that port.
            """
        )
    }

    /// A TLS alert during the handshake; from a client of authtap itself, its CA is not trusted.
    private func alertProse(
        _ h: HandshakeRecord, server: String, client: String, name: String, toProxy: Bool, caPath: String
    ) -> (String, String, String) {
        if toProxy && h.side == "client" {
            return (
                "The client at \(client) rejected authtap's certificate",
                """
                During the handshake with authtap\(name), the client sent \
                \(h.alert == "encrypted" ? "an encrypted alert" : "the alert \(h.alert ?? "")") after our \
                certificate and closed: it does not trust the authtap CA. No exchange was recorded for it.
                """,
                "Trust the authtap CA in the client: \(TrustCA.env) (\(TrustCA.variables(last: nil))); "
                    + "for Java, \(TrustCA.java(caPath))."
            )
        }
        let title = """
            \(h.side == "client" ? "The client" : "The server") sent \(h.alert ?? "an alert") during the \
            handshake with \(server)\(name)
            """
        let fix =
            h.side == "client"
            ? """
            The client refused the server's certificate or parameters: check its trust store and the \
            certificate's names.
            """
            : "The server refused the client's parameters: check versions, ciphers, SNI and client "
                + "certificates."
        return (title, h.detail + ".", fix)
    }

    /// The connection was reset or closed mid-handshake; by a client of authtap itself, its CA is not trusted.
    private func droppedProse(
        _ h: HandshakeRecord, server: String, client: String, name: String, toProxy: Bool
    ) -> (String, String, String) {
        if toProxy && h.side == "client" {
            return (
                "The client at \(client) gave up during the handshake with authtap",
                """
                \(h.detail). A client that closes right after authtap's certificate usually does not trust the \
                authtap CA.
                """,
                "Trust the authtap CA in the client (\(TrustCA.env)), or exclude pinned hosts with --intercept."
            )
        }
        return (
            """
            Connection \(h.outcome == .resetDuringHandshake ? "reset" : "closed") during the handshake \
            with \(server)\(name)
            """,
            h.detail + ".",
            """
            A middlebox or the server dropped the handshake: compare with a direct connection (openssl \
            s_client -connect \(server) -servername \(h.sni ?? h.server)).
            """
        )
    }
}
