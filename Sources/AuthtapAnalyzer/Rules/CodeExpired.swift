import AuthtapModel

/// A code grant refused after the code sat too long, or refused as expired by the server.
struct CodeExpired: Rule {
    var id: RuleID { "code-expired" }
    var severity: Severity { .error }
    var title: String { "Authorization code expired before it was exchanged" }
    var checks: String {
        """
        invalid_grant after a long gap between the authorization response and the token request (reports the gap), \
        or a server message saying the code expired.
        """
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.tokenRequests { check(f, &c) }
    }

    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard let report = f.error, let (issuedAt, gap, expired) = c.codeRefusal(f), expired else { return }
        let codeFP = f.fingerprint("code", .request)
        var evidence: [String: String] = ["code_fingerprint": codeFP ?? "none"]
        if let gap { evidence["gap"] = RuleContext.seconds(gap) }
        c.add(
            id, .error, "Authorization code expired before it was exchanged", f, more: issuedAt.map { [$0] } ?? [],
            explanation: "The token request failed with \(report.summary)"
                + (gap.map {
                    """
                     \(RuleContext.seconds($0)) after the code was issued (exchange \
                    #\(issuedAt.map { "\($0.id)" } ?? "?")).
                    """
                } ?? ".")
                    + """
                     Authorization codes live briefly, typically 30 s to 10 minutes (RFC 6749 §4.1.2 recommends at \
                    most 10).
                    """
                + (gap.map {
                    $0 >= c.options.codeLifetime
                        ? """
                         A gap this long usually means the user sat on the callback page, a debugger paused the backend, \
                        or a queue delayed the exchange.
                        """ : ""
                } ?? ""),
            fix: """
                Exchange the code as soon as the callback arrives, in the same request handler. If something \
                legitimately waits (a debugger, a slow queue), start a fresh authorization afterwards instead of \
                replaying the old code.
                """,
            evidence: evidence)
    }
}
