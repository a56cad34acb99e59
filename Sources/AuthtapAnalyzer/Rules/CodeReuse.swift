import AuthtapModel

/// One authorization code redeemed more than once, seen across token requests or said by the server.
struct CodeReuse: Rule {
    var id: RuleID { "code-reuse" }
    var severity: Severity { .error }
    var title: String { "Authorization code sent to the token endpoint more than once" }
    var checks: String {
        """
        Equal code fingerprints across token requests; names the attempt that succeeded; a duplicate within 2 s is \
        the double-render/double-submit pattern. Also the server's own 'code already used' errors (Entra \
        AADSTS54005, Facebook, Slack).
        """
    }

    static let singleUse = """
        A code is single-use (RFC 6749 §4.1.2): every later attempt fails with invalid_grant, and a careful server \
        also revokes the tokens issued for it.
        """
    static let doubleRender = """
        two copies of the same code path ran at once, the signature of React StrictMode running effects twice, a \
        component re-rendering, or a double-submitted callback.
        """
    static let replay = "the callback was replayed (back button, reload, a retry loop)."
    static let doubleRenderFix = """
        Guard the code exchange so it runs once per code: keep a module-level flag or a ref keyed by the code (not \
        component state), or move the exchange out of a React effect into the route loader / server callback. In \
        development, StrictMode double-invokes effects on purpose.
        """
    static let replayFix = """
        Exchange each code exactly once and drop it from the URL right after (history.replaceState); on reload, \
        start a new authorization instead of reusing the old callback URL. Do not retry a token request that \
        reached the server.
        """

    func evaluate(_ c: inout RuleContext) {
        sameCodeTwice(&c)
        for f in c.tokenRequests { serverSaysReused(f, &c) }
    }

    /// The same code fingerprint in more than one token request.
    func sameCodeTwice(_ c: inout RuleContext) {
        for (fp, attempts) in c.codeRedeemed where attempts.count > 1 {
            let sorted = attempts.sorted { $0.id < $1.id }
            let winner = sorted.first { $0.tokenSucceeded }
            let gap = sorted[1].start.timeIntervalSince(sorted[0].start)
            let simultaneous = gap < c.options.duplicateWindow
            let attempted = sorted.map { a in
                "#\(a.id) \(a.status.map(String.init) ?? "no response")\(a.error.map { " " + $0.code } ?? "")"
            }
            var evidence = [
                "code": sorted[0].value("code", .request) ?? fp, "code_fingerprint": fp,
                "attempts": attempted.joined(separator: ", "), "gap": RuleContext.seconds(gap),
            ]
            evidence["succeeded"] = winner.map { "#\($0.id)" } ?? "none"
            let first = sorted[0]
            let title =
                simultaneous
                ? "Authorization code exchanged twice at once (double render / double submit)"
                : "Authorization code sent to the token endpoint \(sorted.count) times"
            let outcome = winner.map { "; attempt #\($0.id) succeeded" } ?? "; none succeeded"
            c.add(
                id, .error, title, first, more: Array(sorted.dropFirst()),
                explanation: """
                    The same authorization code (fingerprint \(fp)) was sent to \(first.ex.host)\(first.path) \
                    \(sorted.count) times\(outcome). \(Self.singleUse) The attempts were \(RuleContext.seconds(gap)) \
                    apart: \(simultaneous ? Self.doubleRender : Self.replay)
                    """,
                fix: simultaneous ? Self.doubleRenderFix : Self.replayFix,
                evidence: evidence)
        }
    }

    /// The server's own "code already used", when the first redemption was not captured.
    func serverSaysReused(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard f.errorClass == .codeReused, let report = f.error, !c.codeSentMoreThanOnce(f) else { return }
        let codeFP = f.fingerprint("code", .request)
        c.add(
            id, .error, "The server says this authorization code was already used", f,
            explanation: """
                \(f.ex.host) rejected the token request because its code was already redeemed (\(report.summary)). The \
                first redemption was not captured: it went through another path, or happened before authtap started.
                """,
            fix: """
                Exchange each code once. Look for a second caller (a server-side callback and a client-side one both \
                exchanging, a retry, a double render) and remove it.
                """,
            evidence: ["code_fingerprint": codeFP ?? "none"])
    }
}
