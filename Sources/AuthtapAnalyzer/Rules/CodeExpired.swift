import AuthtapModel

/// A code grant refused after the code sat too long, or refused as expired by the server.
struct CodeExpired: Rule {
    var id: RuleID { "code-expired" }
    var severity: Severity { .error }
    var title: String { "Authorization code expired before it was exchanged" }
    var checks: String {
        """
        invalid_grant after a long gap between the authorization response and the token request (reports the gap), \
        a server message saying the code (or device code) expired, or a bare refusal where the capture rules out \
        every other cause (diagnosis by elimination).
        """
    }

    /// A refusal that names no cause, where the capture rules out every other: the time since issue is left.
    func byElimination(_ f: ExchangeFacts, _ report: ErrorReport, _ issuedAt: ExchangeFacts?, _ c: inout RuleContext) {
        let e = Elimination(f, c)
        guard e.verdict?.cause == "code-expired", let verdict = e.verdict else { return }
        c.add(
            id, .error, "Authorization code expired: the only cause the capture leaves", f,
            more: issuedAt.map { [$0] } ?? [],
            explanation: """
                The token request failed with \(report.summary), which names no cause. The capture rules out every \
                other: \(e.candidates.filter { $0.status == .ruledOut }.map(\.evidence).joined(separator: "; ")). \
                What is left is the code's lifetime: \(verdict.evidence), longer than this server keeps its codes, \
                unless it refused the code for state no capture shows (a grant revoked by sign-out in between).
                """,
            fix: """
                Exchange the code as soon as the callback arrives, in the same request handler; if something waits \
                (a debugger, a queue, a slow page), start a fresh authorization instead of replaying the old code.
                """,
            evidence: ["verdict": verdict.evidence, "candidates": e.summary], candidates: e.candidates)
    }

    func evaluate(_ c: inout RuleContext) {
        for f in c.tokenRequests {
            check(f, &c)
            if f.errorClass == .deviceExpired, let report = f.error {
                c.add(
                    id, .error, "The device code expired before the user finished", f,
                    explanation: """
                        \(f.ex.host) answered \(report.summary): the user did not complete the sign-in on the \
                        verification page within the device code's lifetime (RFC 8628 §3.5).
                        """,
                    fix: "Start a new device authorization and ask the user to finish within expires_in seconds.",
                    evidence: ["grant_type": f.grantType ?? "(none)"])
            }
        }
    }

    func check(_ f: ExchangeFacts, _ c: inout RuleContext) {
        guard let report = f.error, let (issuedAt, gap, expired) = c.codeRefusal(f) else { return }
        guard expired else { return byElimination(f, report, issuedAt, &c) }
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
