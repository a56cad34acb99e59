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
        let title: String
        let explanation: String
        let fix: String
        switch h.outcome {
        case .refused:
            title = "Connection to \(server) refused"
            explanation = """
                The SYN from \(client) was answered with a RST: nothing listens on \(server), or a firewall \
                rejects it.
                """
            fix = "Check that the server runs on that port and the host/port in the URL."
        case .synUnanswered:
            title = "No answer to the connection attempt to \(server)"
            explanation = """
                \(client) sent SYNs to \(server) that got no answer: \(h.detail). A firewall drops the packets, or \
                the address is wrong.
                """
            fix = "Check routes and firewalls towards \(server) (and that the app resolves the right address)."
        case .noServerHello, .clientHelloRetransmitted:
            title = "ClientHello to \(server)\(name) never answered"
            explanation = "TCP connected, the client sent its ClientHello, and the server never answered: \(h.detail)."
            fix = """
                Look for a middlebox that filters TLS by SNI or drops large ClientHellos (post-quantum key shares \
                make them larger than one MTU), or a server that is not TLS on that port.
                """
        case .versionMismatch:
            title = "No TLS version in common with \(server)\(name)"
            explanation = "\(h.detail). Offered: \(h.versionsOffered.joined(separator: ", "))."
            fix = "Enable TLS 1.2/1.3 on both sides."
        case .alert where toProxy && h.side == "client":
            title = "The client at \(client) rejected authtap's certificate"
            explanation = """
                During the handshake with authtap\(name), the client sent \
                \(h.alert == "encrypted" ? "an encrypted alert" : "the alert \(h.alert ?? "")") after our \
                certificate and closed: it does not trust the authtap CA. No exchange was recorded for it.
                """
            fix =
                "Trust the authtap CA in the client: \(TrustCA.env) (\(TrustCA.variables(last: nil))); "
                + "for Java, \(TrustCA.java(caPath))."
        case .alert:
            title = """
                \(h.side == "client" ? "The client" : "The server") sent \(h.alert ?? "an alert") during the \
                handshake with \(server)\(name)
                """
            explanation = h.detail + "."
            fix =
                h.side == "client"
                ? """
                The client refused the server's certificate or parameters: check its trust store and the \
                certificate's names.
                """
                : "The server refused the client's parameters: check versions, ciphers, SNI and client "
                    + "certificates."
        case .resetDuringHandshake, .closedDuringHandshake:
            let closedByClient = h.side == "client"
            if toProxy && closedByClient {
                title = "The client at \(client) gave up during the handshake with authtap"
                explanation = """
                    \(h.detail). A client that closes right after authtap's certificate usually does not trust the \
                    authtap CA.
                    """
                fix = "Trust the authtap CA in the client (\(TrustCA.env)), or exclude pinned hosts with --intercept."
            } else {
                title = """
                    Connection \(h.outcome == .resetDuringHandshake ? "reset" : "closed") during the handshake \
                    with \(server)\(name)
                    """
                explanation = h.detail + "."
                fix = """
                    A middlebox or the server dropped the handshake: compare with a direct connection (openssl \
                    s_client -connect \(server) -servername \(h.sni ?? h.server)).
                    """
            }
        case .completed:
            return nil
        }
        return (title, explanation, fix)
    }
}
