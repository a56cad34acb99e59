import AuthtapModel
import Foundation

/// A failed TLS handshake, upstream or with the client; in pcap mode, failed handshakes no exchange explains.
struct TLSFault: Rule {
    var id: RuleID { "tls-fault" }
    var severity: Severity { .error }
    var title: String { "A TLS handshake failed" }
    var checks: String {
        """
        Upstream certificate untrusted, expired, not yet valid, wrong host; protocol version; reset, alert or \
        timeout during the handshake; the client rejecting the authtap CA (with the trust commands for its \
        runtime); in pcap mode, failed handshakes that no exchange explains (refused, SYN or ClientHello \
        unanswered, no common version).
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.facts { check(f, &c) }
        unmatchedHandshakes(&c)
    }

    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        switch f.ex.error {
        case .upstreamTLS?:
            let reason = f.ex.tlsFailure ?? .other
            let cert = f.ex.upstreamTLS?.peerCertificate
            let (title, explanation, fix) = upstreamProse(reason, f)
            var evidence: [String: String] = ["reason": reason.rawValue]
            if let cert {
                evidence["subject"] = cert.subject
                evidence["issuer"] = cert.issuer
                evidence["sans"] = cert.sans.joined(separator: ", ")
                evidence["not_after"] = ISO8601DateFormatter().string(from: cert.notAfter)
            }
            evidence.merge(handshakeEvidence(&c, for: f, clientLeg: false)) { a, _ in a }
            c.add(id, .error, title, f, explanation: explanation, fix: fix, evidence: evidence)
        case .clientTLS? where f.ex.tlsFailure == .handshakeTimeout:
            let packets = handshakeEvidence(&c, for: f, clientLeg: true)
            c.add(
                id, .warning, "The client did not finish the TLS handshake in time", f,
                explanation: """
                    A client opened a tunnel to \(f.ex.host) but did not complete the TLS handshake with authtap \
                    (\(f.ex.errorDetail ?? "no detail")): a client that stalled or went away, a slow-connection \
                    attack, or a client that does not speak TLS on this tunnel. Its certificate trust is not in \
                    question.
                    """,
                fix: "If a real client stalled, look at its side (a prompt, a proxy chain, a network drop); raise "
                    + "--tls-handshake-timeout only for a client known to be slow.",
                evidence: ["host": f.ex.host, "reason": TLSFailureReason.handshakeTimeout.rawValue]
                    .merging(packets) { a, _ in a })
        case .clientTLS?:
            let packets = handshakeEvidence(&c, for: f, clientLeg: true)
            c.add(
                id, .error, "The client rejected authtap's certificate", f,
                explanation: """
                    The client closed the TLS handshake for \(f.ex.host) after seeing authtap's certificate: it does \
                    not trust the authtap CA (\(f.ex.errorDetail ?? "no detail")). Nothing of this connection reached \
                    the server.
                    """,
                fix: "Trust the authtap CA in the client: \(TrustCA.env) sets \(TrustCA.variables(last: "and")); "
                    + "for Java, \(TrustCA.java(c.caPath)); for a browser, import \(c.caPath) as an authority. "
                    + TrustCA.pinning,
                evidence: ["host": f.ex.host, "ca": c.caPath].merging(packets) { a, _ in a })
        default:
            return
        }
    }

    // MARK: packet-level evidence (pcap mode)

    /// The failed handshake record that matches an exchange's TLS failure: same server port (the proxy's
    /// for the client leg), same SNI when known, and close in time.
    func handshakeEvidence(_ c: inout RuleContext, for f: ExchangeFacts, clientLeg: Bool) -> [String: String] {
        guard !c.handshakes.isEmpty else { return [:] }
        let port = clientLeg ? c.proxyPort : f.ex.port
        let at = Int64(saturating: f.start.timeIntervalSince1970 * 1e6)
        var best: (Int, Int64)? = nil
        for (i, h) in c.handshakes.enumerated() where !c.usedHandshakes.contains(i) && h.outcome != .completed {
            guard port == nil || h.serverPort == port, h.sni == nil || h.sni == f.ex.host else { continue }
            let distance = abs(h.startMicros - at)
            guard distance < 5_000_000 else { continue }
            if distance < best?.1 ?? .max { best = (i, distance) }
        }
        guard let (i, _) = best else { return [:] }
        c.usedHandshakes.insert(i)
        let h = c.handshakes[i]
        let outcome = h.outcome.rawValue + (h.side.map { " by \($0)" } ?? "") + (h.alert.map { " (\($0))" } ?? "")
        return ["packets": "\(h.firstPacket)-\(h.lastPacket)", "handshake": outcome, "handshake_detail": h.detail]
    }
}
