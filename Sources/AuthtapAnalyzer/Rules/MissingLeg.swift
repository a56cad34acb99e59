import AuthtapModel

/// A code that reached the client but whose token request never went through authtap.
struct MissingLeg: Rule {
    var id: RuleID { "missing-leg" }
    var severity: Severity { .warning }
    var title: String { "A code was issued but its token request was never seen" }
    var checks: String {
        """
        Authorization response or callback with a code whose fingerprint no token request carries: the back \
        channel bypasses the proxy.
        """
    }

    /// A later token request may still carry the code, so the finding waits for the end of the session.
    var reportsLive: Bool { false }

    func evaluate(_ c: inout RuleContext) {
        for (fp, issuers) in c.codeIssued where c.codeRedeemed[fp] == nil {
            guard let first = issuers.first, first.error == nil else { continue }
            // The callback is where the client receives the code; the authorization response alone may be a
            // browser hop.
            c.add(
                id, .warning,
                "Code issued but never exchanged through authtap", first, more: Array(issuers.dropFirst()),
                explanation: """
                    A code (fingerprint \(fp)) reached the client at #\(first.id), but no token request with it went \
                    through authtap. The back channel (your backend calling the token endpoint) bypasses the proxy, or \
                    the client stopped before exchanging it.
                    """,
                fix: """
                    Point the backend at authtap too: HTTPS_PROXY=http://127.0.0.1:8080 and the authtap CA in its \
                    trust store (\(TrustCA.env)), and make sure NO_PROXY does not list the authorization server's host.
                    """,
                evidence: ["code_fingerprint": fp, "issued_at": issuers.map { "#\($0.id)" }.joined(separator: ", ")])
        }
    }
}
